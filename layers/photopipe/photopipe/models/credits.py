"""Credits: a balance per user and the immutable ledger that explains it.

Every change of a balance is one ledger entry written in the same DynamoDB transaction as the balance
update, and every entry's id says what it is for, so writing it twice is impossible:

- `grant:welcome`      the free allowance, once per user (+N);
- `purchase:<order>`   a paid WeChat Pay order (+the package's credits);
- `reserve:<job>`      one enhancement job submitted (-1: one credit per photo);
- `refund:<job>`       that job failed or was cancelled (+what was reserved, at most once).

Amounts are whole credits (int), never fractions; money (orders) is in fen, never floats."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

CREDITS_PER_PHOTO = 1
WELCOME_ENTRY_ID = "grant:welcome"


class EntryKind(StrEnum):
    GRANT = "grant"
    PURCHASE = "purchase"
    RESERVE = "reserve"
    REFUND = "refund"


def purchase_entry_id(order_id: str) -> str:
    return f"purchase:{order_id}"


def reserve_entry_id(job_id: str) -> str:
    return f"reserve:{job_id}"


def refund_entry_id(job_id: str) -> str:
    return f"refund:{job_id}"


class CreditEntry(BaseModel):
    """One immutable ledger line. `amount` is signed: positive adds credits, negative spends them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    entry_id: str = Field(
        description="What the entry is for; unique per user (grant:welcome, reserve:<job>, ...)"
    )
    user_id: str
    kind: EntryKind
    amount: int = Field(description="Credits added (positive) or spent (negative)")
    reason: str = Field(description="Why, for a person")
    order_id: str | None = None
    job_id: str | None = None
    at: str = Field(description="When it was written (ISO-8601 UTC)")


class CreditBalance(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    user_id: str
    balance: int = Field(ge=0)
    updated_at: str
