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


# Characters a client could use to forge or disguise a log line (rooms, topics
# and ids end up in messages): line breaks, every other control character, and
# the bidirectional overrides that reorder what a terminal shows.
_UNSAFE = [*range(0x00, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029]
_UNSAFE += [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {c: (f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}") for c in _UNSAFE}


def escape(text: str) -> str:
    """``text`` with every line break and control character written as an escape."""
    return text.translate(_ESCAPES)


class JournalFormatter(logging.Formatter):
    """One line per event, prefixed ``<N>`` so journald files it under its priority.

    Whatever the message holds (clients control rooms, topics and ids), it
    stays on its one line: line breaks and control characters are escaped here,
    once, for every log call."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = _PRIORITY.get(record.levelno, "<6>")
        message = escape(record.getMessage())
        if record.exc_info:
            trace = self.formatException(record.exc_info).split("\n")
            message += " | " + " | ".join(escape(line) for line in trace)
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


class LibraryCleanup(logging.Filter):
    """trio reports an async generator a library left open (coredis's cluster pool, when
    its connections close at shutdown) with a traceback of the library's own cleanup.
    Nothing of ours failed and nothing can be done: one warning line says so."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "trio.async_generator_errors" and record.exc_info:
            error = record.exc_info[1]
            record.msg = "a library's async generator failed to close (%s: %s); ignored"
            record.args = (type(error).__name__, error)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def setup_logging(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(LibraryCleanup())
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
