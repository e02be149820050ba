"""Where a config's secrets come from, passed in: the checker reads no file itself.

``token_file``, ``jwt_secret_file``, ``jwks_file`` and ``jwt_secret_env``
name files and variables; the checker asks a ``Sources`` for them, so it stays
pure and a test can hand it a dictionary (the daemon passes the real ones,
partysubd.runtime.config_file).
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol


class Sources(Protocol):
    def read_text(self, path: str) -> str:
        """The file's text; OSError when it cannot be read."""
        ...

    def environ(self, name: str) -> str | None: ...


@dataclass(frozen=True, slots=True)
class StaticSources:
    """Files and variables from dictionaries: what a config without secrets needs."""

    files: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)

    def read_text(self, path: str) -> str:
        try:
            return self.files[path]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", path) from None

    def environ(self, name: str) -> str | None:
        return self.variables.get(name)
