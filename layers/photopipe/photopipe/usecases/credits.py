"""Credits as a user has them: the free allowance (granted once, when the balance is first looked at),
the balance and its ledger, one credit reserved per photo when enhancement is submitted (a batch all
together or not at all), and the refund of a job that failed or was cancelled - exactly once, keyed by
the job id.

`Credits.refund(job_id, reason)` is the one call for anything that ends a job badly (the API's cancel,
the GPU worker's last failed attempt, a dead-letter consumer marking a stuck job failed): it refunds
only a job that is `failed` or `cancelled` and had a reservation, and calling it again, concurrently or
much later, refunds nothing more."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aws_lambda_powertools.metrics import MetricUnit

from photopipe.adapters.credits import CreditsRepository
from photopipe.adapters.jobs import JobsRepository
from photopipe.errors import ConfigurationError, PaymentRequiredError
from photopipe.models import (
    CREDITS_PER_PHOTO,
    WELCOME_ENTRY_ID,
    CreditBalance,
    CreditEntry,
    EntryKind,
    Job,
    JobState,
    refund_entry_id,
    reserve_entry_id,
    utcnow_iso,
)
from photopipe.observability import logger, metrics

HOW_TO_BUY = (
    "Buy more: GET /api/v1/payments/packages lists the packages, POST /api/v1/payments/orders "
    '{"package_id": ..., "method": "native"} gives a QR code to pay with WeChat '
    "(from the command line: photopipe buy PACKAGE)"
)
REFUNDABLE_JOB_STATES = frozenset({JobState.FAILED, JobState.CANCELLED})

RefundResult = Literal["refunded", "already_refunded", "not_reserved", "not_refundable", "no_job"]


@dataclass(frozen=True)
class RefundOutcome:
    job_id: str
    result: RefundResult

    @property
    def refunded(self) -> bool:
        return self.result == "refunded"


@dataclass(frozen=True)
class Account:
    balance: CreditBalance
    entries: list[CreditEntry]
    next_cursor: str | None


@dataclass(frozen=True)
class Credits:
    credits: CreditsRepository
    jobs: JobsRepository | None  # None where nothing refunds by job id (the order-checks function)
    free_credits: int

    # ------------------------------------------------------------------ the account
    def open(self, user_id: str) -> CreditBalance:
        """The user's balance; the first time, the account is created with the free allowance (a grant
        entry with a fixed id, in the same transaction: granted once whatever happens concurrently)."""
        balance = self.credits.balance(user_id)
        if balance is not None:
            return balance
        grant = None
        if self.free_credits > 0:
            grant = CreditEntry(
                entry_id=WELCOME_ENTRY_ID,
                user_id=user_id,
                kind=EntryKind.GRANT,
                amount=self.free_credits,
                reason=f"free allowance: {self.free_credits} credits for a new account",
                at=utcnow_iso(),
            )
        if self.credits.open_account(user_id, grant):
            logger.info("credit account opened", extra={"user_id": user_id, "granted": self.free_credits})
            metrics.add_metric(name="CreditsGranted", unit=MetricUnit.Count, value=self.free_credits)
        balance = self.credits.balance(user_id)
        assert balance is not None  # just created (by this call or a concurrent one); never deleted
        return balance

    def account(self, user_id: str, *, limit: int = 50, cursor: str | None = None) -> Account:
        balance = self.open(user_id)
        entries, next_cursor = self.credits.ledger(user_id, limit=limit, cursor=cursor)
        return Account(balance=balance, entries=entries, next_cursor=next_cursor)

    # ------------------------------------------------------------------ enhancement
    def reserve(self, user_id: str, job_ids: Sequence[str], *, batch_id: str | None = None) -> None:
        """One credit per job, all or none; 402 `insufficient_credits` (naming how to buy more) when the
        balance does not cover them."""
        reason = f"enhancement (batch {batch_id})" if batch_id else "enhancement"

        def entries() -> list[CreditEntry]:
            now = utcnow_iso()
            return [
                CreditEntry(
                    entry_id=reserve_entry_id(job_id),
                    user_id=user_id,
                    kind=EntryKind.RESERVE,
                    amount=-CREDITS_PER_PHOTO,
                    reason=reason,
                    job_id=job_id,
                    at=now,
                )
                for job_id in job_ids
            ]

        result = self.credits.reserve(user_id, entries())
        if result == "no_account":
            self.open(user_id)  # (the grant comes first in the ledger, so the entries are made after it)
            result = self.credits.reserve(user_id, entries())
        if result != "reserved":
            have = self.open(user_id).balance
            need = CREDITS_PER_PHOTO * len(job_ids)
            metrics.add_metric(name="CreditsInsufficient", unit=MetricUnit.Count, value=1)
            raise PaymentRequiredError(
                f"enhancing {len(job_ids)} photo(s) takes {need} credit(s) and you have {have}. {HOW_TO_BUY}",
                code="insufficient_credits",
            )
        metrics.add_metric(name="CreditsReserved", unit=MetricUnit.Count, value=len(job_ids))

    def refund(self, job_id: str, reason: str) -> RefundOutcome:
        """Refund a failed or cancelled job's credit, at most once (idempotent; safe to call again)."""
        if self.jobs is None:
            raise ConfigurationError("refunds by job id need the jobs table here", code="missing_setting")
        job = self.jobs.get(job_id)
        if job is None:
            return RefundOutcome(job_id, "no_job")
        return self.refund_job(job, reason)

    def refund_job(self, job: Job, reason: str) -> RefundOutcome:
        """`refund` for a caller that holds the job's current record."""
        if job.state not in REFUNDABLE_JOB_STATES:
            logger.warning(
                "refund asked for a job that did not fail",
                extra={"job_id": job.job_id, "state": job.state.value},
            )
            return RefundOutcome(job.job_id, "not_refundable")
        return self.release(job.user_id, job.job_id, reason)

    def release(self, user_id: str, job_id: str, reason: str) -> RefundOutcome:
        """Give back a job's reservation without looking at the job: only for a job that never got queued
        (its record was not written, or the queue refused it)."""
        reserved = self.credits.entry(user_id, reserve_entry_id(job_id))
        if reserved is None or reserved.amount >= 0:
            return RefundOutcome(job_id, "not_reserved")
        refund = CreditEntry(
            entry_id=refund_entry_id(job_id),
            user_id=user_id,
            kind=EntryKind.REFUND,
            amount=-reserved.amount,
            reason=reason,
            job_id=job_id,
            at=utcnow_iso(),
        )
        result = self.credits.refund(refund, reserved)
        if result == "refunded":
            logger.info(
                "credit refunded", extra={"job_id": job_id, "user_id": user_id, "credits": refund.amount}
            )
            metrics.add_metric(name="CreditsRefunded", unit=MetricUnit.Count, value=refund.amount)
        return RefundOutcome(job_id, result)
