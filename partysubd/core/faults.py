"""Internal errors: reported once, counted, and contained to what raised.

A bug must cost one connection, one request or one item, never the daemon.
Every place that contains a fault (the engine's read, flush and timer paths,
the hub's fan-out, the control plane, the cluster link) reports it here, from
inside its ``except`` block: one error-level line with the traceback and who
was hit, and ``partysub_internal_errors_total{where=...}``.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from .stats import Events

log = logging.getLogger("partysubd.faults")

T = TypeVar("T")


def report(events: Events, where: str, who: str) -> None:
    """Log the exception being handled (with its traceback) and count it."""
    events.internal_errors[where] += 1
    log.error("internal error in %s (%s); only it is ended", where, who or "-", exc_info=True)


def reported(events: Events, where: str, subscriber: T) -> T:
    """``report`` for a subscriber, returning it (to be ended by the caller)."""
    report(events, where, str(getattr(subscriber, "id", "")))
    return subscriber
