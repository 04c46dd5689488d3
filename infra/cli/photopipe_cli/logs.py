"""Log records for a terminal: the local stack's structured records as `message key=value ...`."""

from __future__ import annotations

import logging
import sys
from typing import TextIO


class KeyValueFormatter(logging.Formatter):
    """`12:00:01 INFO  sqs batch processed function=IngestFunction batch_size=3 failures=0`: the
    structured `extra` keys of a record, readable in a terminal."""

    _STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={value}" for key, value in record.__dict__.items() if key not in self._STANDARD
        )
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<5} {record.getMessage()}"
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at the time (it may be swapped, e.g. by tests)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(verbose: bool = False) -> None:
    """The local stack's records (logger `photopipe_local`) go to stderr as `message key=value ...`."""
    handler = StderrHandler()
    handler.setFormatter(KeyValueFormatter())
    local = logging.getLogger("photopipe_local")
    local.handlers[:] = [handler]
    local.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request access log
