"""Credits table: per user (`user_id` hash key) one balance item (`sk = BALANCE`) and the ledger's
immutable entries (`sk = ENTRY#<entry id>`), listed newest first through the `by-time` local index on
`at` (the balance item has no `at`, so the index holds entries only, read consistently).

Every change is one DynamoDB transaction: the balance update (conditional: the account exists and the
balance never goes below zero) together with the entry's put (conditional: no entry with that id yet).
An entry's id says what it is for (`reserve:<job>`, `refund:<job>`, `purchase:<order>`,
`grant:welcome`), so a retried, duplicated or concurrent call can apply at most once, and the entries of a
user always add up to the balance. Entries are never updated or deleted."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from photopipe.adapters.aws import error_code, translate
from photopipe.adapters.dynamo import decode_cursor, encode_cursor, plain, table, to_item
from photopipe.errors import BadRequestError, ConflictError, TransientError
from photopipe.models import CreditBalance, CreditEntry, utcnow_iso

BALANCE_SK = "BALANCE"
TIME_INDEX = "by-time"
_CURSOR_KEYS = frozenset({"user_id", "sk", "at"})

ReserveResult = Literal["reserved", "insufficient", "no_account"]
RefundResult = Literal["refunded", "already_refunded", "not_reserved"]


def entry_sk(entry_id: str) -> str:
    return f"ENTRY#{entry_id}"


class TransactionConflict(Exception):
    """DynamoDB cancelled a transaction because another one was touching the same item: retry it."""


class Cancelled(Exception):
    """A transaction's condition failed; `reasons` holds DynamoDB's code for each of its items, in order."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(", ".join(reasons))
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"


def transact(client: Any, items: list[dict[str, Any]], what: str) -> None:
    """TransactWriteItems (Python values: the resource's client serialises them). A cancelled condition
    raises `Cancelled`; a conflict with a concurrent transaction is retried with jittered backoff, a few
    times, then reported as a transient failure (tenacity: botocore does not retry cancelled transactions)."""

    def attempt() -> None:
        try:
            client.transact_write_items(TransactItems=items)
        except ClientError as e:
            if error_code(e) != "TransactionCanceledException":
                raise translate(e, what) from e
            reasons = [str(r.get("Code") or "None") for r in e.response.get("CancellationReasons", [])]
            if "TransactionConflict" in reasons:
                raise TransactionConflict(what) from e
            if "ConditionalCheckFailed" in reasons:
                raise Cancelled(reasons) from e
            raise translate(e, what) from e
        except BotoCoreError as e:
            raise translate(e, what) from e

    try:
        for trial in Retrying(
            retry=retry_if_exception_type(TransactionConflict),
            stop=stop_after_attempt(8),
            wait=wait_random_exponential(multiplier=0.02, max=0.5),
            reraise=True,
        ):
            with trial:
                attempt()
    except TransactionConflict as e:
        raise TransientError(f"{what} kept conflicting with concurrent updates; try again") from e


class CreditsRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)
        self.name = table_name

    @property
    def client(self) -> Any:
        return self._table.meta.client

    # ------------------------------------------------------------------ read
    def balance(self, user_id: str) -> CreditBalance | None:
        try:
            item = self._table.get_item(Key={"user_id": user_id, "sk": BALANCE_SK}, ConsistentRead=True).get(
                "Item"
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading the credit balance") from e
        return CreditBalance.model_validate(plain(item)) if item else None

    def entry(self, user_id: str, entry_id: str) -> CreditEntry | None:
        try:
            item = self._table.get_item(
                Key={"user_id": user_id, "sk": entry_sk(entry_id)}, ConsistentRead=True
            ).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading the credit ledger") from e
        return CreditEntry.model_validate(plain(item)) if item else None

    def ledger(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> tuple[list[CreditEntry], str | None]:
        """The user's entries, newest first, `limit` at a time."""
        kwargs: dict[str, Any] = {
            "IndexName": TIME_INDEX,
            "KeyConditionExpression": "user_id = :u",
            "ExpressionAttributeValues": {":u": user_id},
            "ScanIndexForward": False,
            "ConsistentRead": True,
            "Limit": limit,
        }
        start = decode_cursor(cursor, _CURSOR_KEYS)
        if start is not None:
            if start["user_id"] != user_id:
                raise BadRequestError("the cursor is not one this API returned", code="invalid_cursor")
            kwargs["ExclusiveStartKey"] = start
        try:
            resp = self._table.query(**kwargs)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading the credit ledger") from e
        entries = [CreditEntry.model_validate(plain(i)) for i in resp.get("Items", [])]
        return entries, encode_cursor(resp.get("LastEvaluatedKey"))

    # ------------------------------------------------------------------ items (for transactions)
    def entry_put(self, entry: CreditEntry) -> dict[str, Any]:
        """Put an entry, on condition that none with its id exists."""
        return {
            "Put": {
                "TableName": self.name,
                "Item": to_item(
                    {**entry.model_dump(mode="json", exclude_none=True), "sk": entry_sk(entry.entry_id)}
                ),
                "ConditionExpression": "attribute_not_exists(sk)",
            }
        }

    def balance_add(self, user_id: str, amount: int) -> dict[str, Any]:
        """Add (or, with a negative amount, take) credits, on condition that the account exists and, when
        taking, that the balance covers it."""
        condition = "attribute_exists(sk)"
        values: dict[str, Any] = {":n": amount, ":now": utcnow_iso()}
        if amount < 0:
            condition += " AND balance >= :need"
            values[":need"] = -amount
        return {
            "Update": {
                "TableName": self.name,
                "Key": {"user_id": user_id, "sk": BALANCE_SK},
                "UpdateExpression": "SET balance = balance + :n, updated_at = :now",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }

    # ------------------------------------------------------------------ changes
    def open_account(self, user_id: str, grant: CreditEntry | None) -> bool:
        """Create the balance with the free allowance and its grant entry, once: False when the account
        already existed (nothing is granted again)."""
        now = utcnow_iso()
        amount = grant.amount if grant is not None else 0
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": self.name,
                    "Item": {"user_id": user_id, "sk": BALANCE_SK, "balance": amount, "updated_at": now},
                    "ConditionExpression": "attribute_not_exists(sk)",
                }
            }
        ]
        if grant is not None and grant.amount > 0:
            items.append(self.entry_put(grant))
        try:
            transact(self.client, items, "opening the credit account")
        except Cancelled:
            return False
        return True

    def reserve(self, user_id: str, entries: Iterable[CreditEntry]) -> ReserveResult:
        """Take the entries' credits (their amounts are negative) all together or not at all."""
        entries = list(entries)
        total = sum(e.amount for e in entries)
        items = [self.balance_add(user_id, total), *(self.entry_put(e) for e in entries)]
        try:
            transact(self.client, items, "reserving credits")
        except Cancelled as e:
            if not e.failed(0):
                # A reserve entry with that job id exists already: job ids are new uuids, so a bug.
                raise ConflictError(
                    f"credits were already reserved for one of the jobs {[x.job_id for x in entries]}",
                    code="conflict",
                ) from e
            return "no_account" if self.balance(user_id) is None else "insufficient"
        return "reserved"

    def refund(self, refund: CreditEntry, reserved: CreditEntry) -> RefundResult:
        """Give back what `reserved` took, once: the refund entry's put, a check that the reservation is
        there, and the balance update, in one transaction."""
        items = [
            self.entry_put(refund),
            {
                "ConditionCheck": {
                    "TableName": self.name,
                    "Key": {"user_id": reserved.user_id, "sk": entry_sk(reserved.entry_id)},
                    "ConditionExpression": "attribute_exists(sk) AND amount = :reserved",
                    "ExpressionAttributeValues": {":reserved": reserved.amount},
                }
            },
            self.balance_add(refund.user_id, refund.amount),
        ]
        try:
            transact(self.client, items, "refunding credits")
        except Cancelled as e:
            if e.failed(0):
                return "already_refunded"
            if e.failed(1):
                return "not_reserved"
            raise TransientError("the credit account vanished while refunding; try again") from e
        return "refunded"
