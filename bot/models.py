"""The bot's full schema: the analytics tables of reports/ plus the bot-side tables."""

from sqlalchemy import BigInteger, Column, String, Table

from reports.schema import metadata

people = Table(
    "people",
    metadata,
    Column("user_id", BigInteger, primary_key=True, autoincrement=False),
    # Set by /lang; None means "follow the Telegram client's language".
    Column("language", String(8), nullable=True),
)

__all__ = ["metadata", "people"]
