"""Logging set-up: one format for the whole process, and the bot token redacted from every line."""

import logging
import sys
import threading
from types import TracebackType

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
    # An exception nobody caught is printed through the same handler, so it is redacted too
    # (a traceback of a network error can quote the request URL, which carries the token).
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread
    # Alembic narrates every start ("Context impl SQLiteImpl"); only its problems matter.
    logging.getLogger("alembic").setLevel(max(level, logging.WARNING))


def _log_uncaught(
    kind: type[BaseException], value: BaseException, trace: TracebackType | None
) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, value, trace)
        return
    logging.getLogger("bot").critical("uncaught exception", exc_info=(kind, value, trace))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    logging.getLogger("bot").critical(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
