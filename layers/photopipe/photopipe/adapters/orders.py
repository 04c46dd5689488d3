"""Orders table: one item per order (`order_id`, a uuid hex), found from WeChat Pay's side by its trade
number (`by-out-trade-no` GSI, then a consistent read of the item) and listed per user (`by-owner`); and one
counters item per UTC day (`order_id = DAY#<yyyy-mm-dd>`: orders created, paid, revenue in fen, credits
sold), updated with ADD in the same transaction as the order or payment it counts, read by key (the
admin statistics). Counter items carry neither `out_trade_no` nor `user_id`, so no index holds them.

Every state move is a conditional write naming the states it may leave. Paying an order is one
transaction across tables: the order `pending | closed → paid` (on condition that its amount is the one
paid), the ledger's `purchase:<order>` entry, the balance increment and the day's order and revenue
counters. So a payment is credited exactly once and counted exactly once, whichever of a notify, a
repeated notify or an order check gets there first."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import translate
from photopipe.adapters.credits import Cancelled, transact
from photopipe.adapters.dynamo import conditional_update, plain, table, to_item, transition
from photopipe.errors import ConflictError
from photopipe.models import PAYABLE_ORDER_STATES, Order, OrderState, utcnow_iso

OUT_TRADE_NO_INDEX = "by-out-trade-no"
OWNER_INDEX = "by-owner"
DAY_PREFIX = "DAY#"

SettleResult = Literal["paid", "not_payable", "no_account"]


def _order(item: dict[str, Any]) -> Order:
    return Order.model_validate(plain(item))


def day_key(day: str) -> str:
    return f"{DAY_PREFIX}{day}"


class OrdersRepository:
    def __init__(self, table_name: str, resource: Any | None = None) -> None:
        self._table = table(table_name, resource)
        self.name = table_name

    def create(self, order: Order, also: Iterable[dict[str, Any]] = ()) -> None:
        """Put a new order (never over an existing one), with `also` (e.g. a counter) in the same
        transaction."""
        put = {
            "Put": {
                "TableName": self.name,
                "Item": to_item(order.item()),
                "ConditionExpression": "attribute_not_exists(order_id)",
            }
        }
        try:
            transact(self._table.meta.client, [put, *also], "creating the order")
        except Cancelled as e:
            raise _conflict(order.order_id) from e

    def get(self, order_id: str) -> Order | None:
        if order_id.startswith(DAY_PREFIX):
            return None  # a counters item, not an order
        try:
            item = self._table.get_item(Key={"order_id": order_id}, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "reading the order") from e
        return _order(item) if item else None

    def find_by_out_trade_no(self, out_trade_no: str) -> Order | None:
        """The index is eventually consistent: it only finds the order id; the item is then read
        consistently."""
        try:
            resp = self._table.query(
                IndexName=OUT_TRADE_NO_INDEX,
                KeyConditionExpression=Key("out_trade_no").eq(out_trade_no),
                Limit=2,
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, "finding the order by its trade number") from e
        items = resp.get("Items", [])
        return self.get(str(items[0]["order_id"])) if items else None

    # ------------------------------------------------------------------ daily counters
    def counters_update(self, day: str, counters: Mapping[str, int]) -> dict[str, Any]:
        """ADD `counters` to the day's item, as an item of a transaction (so they move with what they
        count)."""
        increments = {k: v for k, v in counters.items() if v}
        return {
            "Update": {
                "TableName": self.name,
                "Key": {"order_id": day_key(day)},
                "UpdateExpression": "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(increments))),
                "ExpressionAttributeNames": {f"#c{i}": k for i, k in enumerate(increments)},
                "ExpressionAttributeValues": {f":c{i}": v for i, v in enumerate(increments.values())},
            }
        }

    def days(self, days: Iterable[str]) -> dict[str, dict[str, int]]:
        """The counters of each day asked for (a day without orders is empty)."""
        wanted = list(dict.fromkeys(days))
        found: dict[str, dict[str, int]] = {d: {} for d in wanted}
        client = self._table.meta.client
        for start in range(0, len(wanted), 100):
            keys = [{"order_id": day_key(d)} for d in wanted[start : start + 100]]
            request: dict[str, Any] = {self.name: {"Keys": keys, "ConsistentRead": True}}
            while request:
                try:
                    resp = client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError) as e:
                    raise translate(e, "reading the payment statistics") from e
                for item in resp.get("Responses", {}).get(self.name, []):
                    values = plain(item)
                    day = str(values.pop("order_id")).removeprefix(DAY_PREFIX)
                    found[day] = {k: int(v) for k, v in values.items() if isinstance(v, int)}
                request = resp.get("UnprocessedKeys") or {}
        return found

    # ------------------------------------------------------------------ state moves
    def update(
        self,
        order_id: str,
        *,
        from_states: Iterable[OrderState],
        to_state: OrderState | None = None,
        set_fields: dict[str, Any] | None = None,
        remove_fields: Iterable[str] = (),
    ) -> Order | None:
        """Conditionally update an order: the new record, or None when it was in none of `from_states`."""
        fields: dict[str, Any] = {**(set_fields or {}), "updated_at": utcnow_iso()}
        if to_state is not None:
            fields["state"] = to_state.value
        t = transition(
            "order_id",
            from_states=[s.value for s in from_states],
            set_fields=fields,
            remove_fields=remove_fields,
        )
        item = conditional_update(
            self._table,
            {"order_id": order_id},
            update=t.update,
            condition=t.condition,
            names=t.names,
            values=t.values,
            what="updating the order",
        )
        return _order(item) if item else None

    def settle(
        self,
        order: Order,
        *,
        transaction_id: str,
        paid_at: str,
        entry: dict[str, Any],
        balance: dict[str, Any],
        counters: Iterable[dict[str, Any]] = (),
    ) -> SettleResult:
        """`pending | closed → paid` for exactly the order's amount, in one transaction with the ledger
        `entry`'s put, the `balance` increment and the `counters`. `not_payable`: it was paid already (or
        is under review); `no_account`: the buyer has no credit account yet (open it and try again)."""
        t = transition(
            "order_id",
            from_states=[s.value for s in PAYABLE_ORDER_STATES],
            set_fields={
                "state": OrderState.PAID.value,
                "transaction_id": transaction_id,
                "paid_at": paid_at,
                "updated_at": utcnow_iso(),
            },
        )
        t.names["#amount"] = "amount"
        t.values[":amount"] = order.amount
        update = {
            "Update": {
                "TableName": self.name,
                "Key": {"order_id": order.order_id},
                "UpdateExpression": t.update,
                "ConditionExpression": t.condition + " AND #amount = :amount",
                "ExpressionAttributeNames": t.names,
                "ExpressionAttributeValues": t.values,
            }
        }
        try:
            transact(self._table.meta.client, [update, entry, balance, *counters], "crediting the paid order")
        except Cancelled as e:
            if e.failed(0):
                return "not_payable"
            if e.failed(2):
                return "no_account"
            raise _conflict(order.order_id) from e  # a purchase entry without a paid order: never written
        return "paid"


def _conflict(order_id: str) -> ConflictError:
    return ConflictError(f"order {order_id!r} changed while it was being written; try again", code="conflict")
