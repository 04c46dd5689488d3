"""Per-user limits and the counters behind them (the limits table; every change an atomic conditional
update, never a read-then-write), and the login-attempt limits.

- uploads per day (UTC): `POST /uploads` counts one; resets at midnight UTC;
- stored bytes: an upload reserves its declared size, ingest charges the real size instead, a delete
  gives it back; "resets" when the user deletes photos;
- concurrent enhancement jobs: the job ids holding a slot; a slot frees itself when its job is finished
  (checked against the jobs table when slots are claimed, so nothing can leak a slot);
- login attempts per account and per source address in fixed windows: a failed attempt keeps its count,
  a successful one gives it back."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

GIB = 1024**3


class Limit(StrEnum):
    """The names a `quota_exceeded` (or `login_throttled`) answer gives in `error.limit`."""

    UPLOADS_PER_DAY = "uploads_per_day"
    STORED_BYTES = "stored_bytes"
    ACTIVE_JOBS = "active_enhancement_jobs"
    LOGIN_PER_ACCOUNT = "login_attempts_per_account"
    LOGIN_PER_SOURCE = "login_attempts_per_source"


@dataclass(frozen=True)
class Quotas:
    uploads_per_day: int = 1000
    stored_bytes: int = 10 * GIB
    active_jobs: int = 20


@dataclass(frozen=True)
class LoginLimits:
    window_seconds: int = 900
    per_account: int = 10
    per_source: int = 100


@dataclass(frozen=True)
class JobSlots:
    """The job ids holding a user's enhancement slots, and the version the next claim must match."""

    job_ids: tuple[str, ...]
    version: int
