"""Application shell: settings, database, import, Telegram client, scheduler and the CLI."""
