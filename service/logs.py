"""Logging: plain text for people on a terminal, one JSON object per line otherwise (a log
collector reads those), unless the format is set."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import orjson

# Attributes of every record, not extras. uvicorn adds ``color_message`` (its message with ANSI
# colour codes) to its own records: the plain ``message`` already says it.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


class JsonFormatter(logging.Formatter):
    """Time, level, logger, message, and every ``extra={...}`` field as its own key."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        return line + ("  " + " ".join(f"{k}={v}" for k, v in extras.items()) if extras else "")


def resolved_format(fmt: str, stream: TextIO) -> str:
    """``auto``: text when ``stream`` is a terminal (a person reads it), else JSON."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if isatty is not None and isatty() else "json"


def configure_logging(level: str, fmt: str) -> None:
    """Log to stderr at ``level`` in ``fmt`` (``auto``, ``json`` or ``text``)."""
    handler = logging.StreamHandler(sys.stderr)
    if resolved_format(fmt, sys.stderr) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # One line per request is the metrics' job, not the log's.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
