"""Where data lives: the engine, the schema and its migrations, and small functions per table."""
