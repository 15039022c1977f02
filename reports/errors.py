"""User-facing errors of the analytics core; every message is safe to show as it is.

ReportError
 ├── PeriodError   the period text cannot be understood or is out of bounds
 └── FilterError   an unknown channel or app was asked for
"""


class ReportError(Exception):
    """Root of errors whose message a user may read."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PeriodError(ReportError):
    pass


class FilterError(ReportError):
    pass
