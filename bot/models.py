"""The bot's full schema: the analytics tables of reports/ plus the bot-side tables."""

from reports.schema import metadata

__all__ = ["metadata"]
