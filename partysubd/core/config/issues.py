"""What a config check reports: each problem with its file, line and key."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Where a value sits in the document: table and key names, array entries by index.
KeyPath = tuple[str | int, ...]


class Severity(StrEnum):
    ERROR = "error"  # the config cannot be served
    WARNING = "warning"  # it can, but probably not as meant


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    source: str  # the file, or the command-line flag that gave the value
    line: int | None
    key: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        key = f" [{self.key}]" if self.key else ""
        return f"{where}:{key} {self.severity}: {self.message}"


class ConfigError(Exception):
    """A config that cannot be served; ``issues`` holds every error and warning found."""

    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))

    @property
    def errors(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity is Severity.ERROR]


def dotted(path: KeyPath) -> str:
    """``("pubsub", 0, "nodes")`` as people write it: ``pubsub[0].nodes``."""
    return ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
