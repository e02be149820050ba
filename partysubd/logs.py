"""Log lines for journald (a priority prefix per line) or for log shippers (JSON)."""

from __future__ import annotations

import json
import logging
import sys
import time

_PRIORITY = {
    logging.DEBUG: "<7>",
    logging.INFO: "<6>",
    logging.WARNING: "<4>",
    logging.ERROR: "<3>",
    logging.CRITICAL: "<2>",
}
FORMATS = ("text", "json")


class JournalFormatter(logging.Formatter):
    """One line per event, prefixed ``<N>`` so journald files it under its priority."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = _PRIORITY.get(record.levelno, "<6>")
        message = record.getMessage()
        if record.exc_info:
            message += " | " + self.formatException(record.exc_info).replace("\n", " | ")
        return f"{prefix}{record.levelname.lower()} {record.name}: {message}"


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else JournalFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    set_level(level)


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
    # Hypercorn announces its listener at info level; our start-up line says it.
    admin_level = max(logging.WARNING, logging.getLogger().level)
    logging.getLogger("partysubd.admin").setLevel(admin_level)
    # coredis logs each retry of a lost connection; the cluster link says it once.
    logging.getLogger("coredis").setLevel(admin_level)
