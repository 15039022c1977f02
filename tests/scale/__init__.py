"""Several instances: webhook mode, state shared in Redis, two bot processes under load."""
