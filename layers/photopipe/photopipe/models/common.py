"""What every model shares."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow_iso() -> str:
    """ISO-8601 UTC with microseconds: sorts lexically, so it doubles as a sort key."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
