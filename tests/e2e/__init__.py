"""End to end: the real polling loop against the fake Bot API, and the CLI as subprocesses."""
