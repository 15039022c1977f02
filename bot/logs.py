"""Logging set-up: one format for the whole process, and the bot token redacted from every line."""

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
REDACTED = "<token>"


class RedactSecrets(logging.Filter):
    """Replaces secrets in the final text of a record, including tracebacks and exception texts.

    aiogram's network errors can quote the request URL, which carries the token.
    """

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if secret]

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        text = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
            if record.exc_text:
                record.exc_text = record.exc_text.replace(secret, REDACTED)
            if record.stack_info:
                record.stack_info = record.stack_info.replace(secret, REDACTED)
        record.msg, record.args = text, None
        return True


def setup_logging(level: int, secrets: list[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Alembic narrates every start ("Context impl SQLiteImpl"); only its problems matter.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))
