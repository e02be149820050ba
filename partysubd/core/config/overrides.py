"""Command-line settings, merged into the document before its one check.

``serve --port 8080`` is the same as writing ``port = 8080`` under
``[server]``: the value goes through the same checks and cross-checks as the
file's (an ``--admin-listen`` off loopback needs a token, as ``listen`` does),
a problem with it names the flag, and a reload merges it again so the flag
keeps winning over the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Overrides:
    host: str | None = None
    port: int | None = None
    log_level: str | None = None
    admin_listen: str | None = None
    cluster_name: str | None = None

    def given(self) -> dict[tuple[str, str], tuple[str, Any]]:
        """The key each given flag sets, with the flag's name and value."""
        flags: dict[tuple[str, str], tuple[str, Any]] = {
            ("server", "host"): ("--host", self.host),
            ("server", "port"): ("--port", self.port),
            ("server", "log_level"): ("--log-level", self.log_level),
            ("admin", "listen"): ("--admin-listen", self.admin_listen),
            ("cluster", "name"): ("--cluster-name", self.cluster_name),
        }
        return {path: flag for path, flag in flags.items() if flag[1] is not None}

    def merge(self, document: dict[str, Any]) -> dict[str, Any]:
        """The document with each flag's value in its table; a table that is
        not one is left for the check to report. [cluster] is never created:
        a name alone is not a cluster (the check says the flag needs one)."""
        merged = dict(document)
        for (table, key), (_, value) in self.given().items():
            if table not in merged and table == "cluster":
                continue
            section = merged.get(table, {})
            if isinstance(section, dict):
                merged[table] = {**section, key: value}
        return merged


NO_OVERRIDES = Overrides()
