"""Per-user quotas (`photopipe.models.quotas`): admission of uploads (per day and stored bytes) and of
enhancement jobs (concurrent slots). Beyond a limit the caller gets 429 `quota_exceeded` naming the limit
and when it resets.

Job slots are the ids of the jobs holding them, not a bare counter that every finishing job would have to
decrement (a worker that dies between finishing a job and decrementing would leak a slot forever): a claim
reads the holders, keeps those whose job is still queued or running, and writes the survivors plus the new
jobs back under a version check, retrying when another claim got there first."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.limits import LimitsRepository
from photopipe.errors import TooManyRequestsError, TransientError
from photopipe.models import ACTIVE_JOB_STATES, GIB, Limit, Quotas
from photopipe.observability import logger

# A claim that lost the race reads again and retries after a short random pause (so racing claims spread
# out instead of colliding again): 30 submits at once for one account all get an answer.
_CLAIM_TRIES = 40
_CLAIM_PAUSE_S = 0.01


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _size(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / 1024**2:.1f} MB"


@dataclass(frozen=True)
class Usage:
    uploads_today: int
    stored_bytes: int
    active_jobs: int
    quotas: Quotas
    resets_at: str  # when the daily upload count starts again


@dataclass(frozen=True)
class QuotaGuard:
    limits: LimitsRepository
    quotas: Quotas
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    # ------------------------------------------------------------------ uploads
    def admit_upload(self, user_id: str, size: int) -> str:
        """Count an upload today and reserve its bytes; returns the day it was counted on (to release it
        if the upload cannot be created). Raises 429 `quota_exceeded`."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        day = now.strftime("%Y-%m-%d")
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        refused = self.limits.admit_upload(
            user_id,
            day=day,
            size=size,
            per_day=self.quotas.uploads_per_day,
            max_bytes=self.quotas.stored_bytes,
            expires_at=int(midnight.timestamp()) + 24 * 3600,
        )
        if refused == Limit.UPLOADS_PER_DAY:
            retry_after = max(1, int((midnight - now).total_seconds()) + 1)
            self._refused(user_id, refused)
            raise TooManyRequestsError(
                f"you have created {self.quotas.uploads_per_day} uploads today, the daily limit; it resets "
                f"at {_iso(midnight)} (midnight UTC)",
                code="quota_exceeded",
                limit=refused.value,
                retry_after=retry_after,
                resets_at=_iso(midnight),
            )
        if refused == Limit.STORED_BYTES:
            _, stored = self.limits.usage(user_id, day=day)
            self._refused(user_id, refused)
            raise TooManyRequestsError(
                f"this {_size(size)} upload would take your library past its {_size(self.quotas.stored_bytes)} "
                f"limit ({_size(stored)} used); delete photos to make room",
                code="quota_exceeded",
                limit=refused.value,
            )
        return day

    def release_upload(self, user_id: str, *, day: str, size: int) -> None:
        self.limits.release_upload(user_id, day=day, size=size)

    def charge(self, user_id: str, delta: int) -> None:
        """Bytes stored for this user changed by `delta` (negative: freed)."""
        self.limits.add_stored_bytes(user_id, delta)

    # ------------------------------------------------------------------ enhancement jobs
    def claim_job_slots(self, user_id: str, job_ids: list[str], jobs: JobsRepository) -> None:
        """Hold one slot per new job, or raise 429 `quota_exceeded` and hold none."""
        for attempt in range(_CLAIM_TRIES):
            if attempt:
                self.sleep(random.uniform(0, _CLAIM_PAUSE_S * min(attempt, 10)))
            slots = self.limits.job_slots(user_id)
            states = jobs.states(slots.job_ids) if slots.job_ids else {}
            live = [j for j in slots.job_ids if states.get(j) in ACTIVE_JOB_STATES]
            if len(live) + len(job_ids) > self.quotas.active_jobs:
                self._refused(user_id, Limit.ACTIVE_JOBS)
                raise TooManyRequestsError(
                    f"you have {len(live)} enhancement jobs queued or running and the limit is "
                    f"{self.quotas.active_jobs}; this request adds {len(job_ids)}. Submit it when one "
                    "finishes, or cancel one (DELETE /api/v1/enhance/{job_id})",
                    code="quota_exceeded",
                    limit=Limit.ACTIVE_JOBS.value,
                )
            if self.limits.claim_job_slots(user_id, version=slots.version, job_ids=live + job_ids):
                return
        raise TransientError("too many enhancement requests at once for this account; try again")

    # ------------------------------------------------------------------ reading
    def usage(self, user_id: str, jobs: JobsRepository) -> Usage:
        now = datetime.fromtimestamp(self.clock(), UTC)
        uploads, stored = self.limits.usage(user_id, day=now.strftime("%Y-%m-%d"))
        slots = self.limits.job_slots(user_id)
        states = jobs.states(slots.job_ids) if slots.job_ids else {}
        midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
        return Usage(
            uploads_today=uploads,
            stored_bytes=stored,
            active_jobs=sum(1 for j in slots.job_ids if states.get(j) in ACTIVE_JOB_STATES),
            quotas=self.quotas,
            resets_at=_iso(midnight),
        )

    @staticmethod
    def _refused(user_id: str, limit: Limit) -> None:
        logger.info("quota exceeded", extra={"user_id": user_id, "limit": limit.value})
