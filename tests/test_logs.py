"""Log lines: one per event, and nothing a client sends can forge one."""

from __future__ import annotations


def test_log_lines_cannot_be_forged_by_what_clients_control() -> None:
    import logging

    from partysubd.runtime.logs import JournalFormatter

    record = logging.LogRecord(
        "partysubd.session",
        logging.INFO,
        __file__,
        1,
        "connect %s to %s",
        ("x\n<3>error partysubd: forged", "room\x1b[2J\u202e"),
        None,
    )
    line = JournalFormatter().format(record)
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line
    assert line == (
        "<6>info partysubd.session: connect x\\x0a<3>error partysubd: forged to room\\x1b[2J\\u202e"
    )
