"""Reading a config from disk: the file, and the secrets it names, from this machine.

The checking itself is pure (partysubd.core.config); this is the edge that
hands it the file's text and a ``Sources`` that reads real files and the
real environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..core.config import (
    BUILTIN_SOURCE,
    DEFAULT_CONFIG_TOML,
    NO_OVERRIDES,
    Config,
    ConfigError,
    ConfigIssue,
    Overrides,
    parse_config,
)

# ``-c -``: the config comes from standard input.
STDIN = "-"


class LocalSources:
    """Files from this machine's disk, variables from this process's environment."""

    def read_text(self, path: str) -> str:
        return Path(path).read_text(encoding="utf-8")

    def environ(self, name: str) -> str | None:
        return os.environ.get(name)


def load_config(path: str | Path | None, overrides: Overrides = NO_OVERRIDES) -> Config:
    """Read and check a config file, or the built-in default when ``path`` is None."""
    if path is None:
        return parse_config(
            DEFAULT_CONFIG_TOML, BUILTIN_SOURCE, sources=LocalSources(), overrides=overrides
        )
    source = str(path)
    try:
        if source == STDIN:
            source, text = "<stdin>", sys.stdin.read()
        else:
            text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigIssue(source, None, "", f"cannot read: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([ConfigIssue(source, None, "", "not UTF-8 text")]) from exc
    return parse_config(text, source, sources=LocalSources(), overrides=overrides)
