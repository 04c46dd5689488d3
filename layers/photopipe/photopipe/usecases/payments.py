"""Buying credits with WeChat Pay: the price list, orders (Native QR code or JSAPI), the notify callback,
order checks, the mini-program login that links a WeChat openid, and the payment statistics.

How money moves, and why each payment is credited exactly once:

1. `create_order` writes the order (`pending`, expiring after 2 hours) before WeChat Pay hears of it,
   queues its first check, then places it at WeChat Pay with the same expiry (`time_expire`: WeChat Pay
   itself refuses a payment after that) and our order id as `attach`.
2. WeChat Pay's notify is verified over its raw bytes (signature, 5-minute timestamp window), decrypted,
   and compared with the order (mchid, appid, out_trade_no, amount). When they disagree, WeChat Pay is
   asked (a signed answer) before anything is credited.
3. Crediting is one DynamoDB transaction: the order `pending | closed → paid` for exactly its amount,
   the ledger's `purchase:<order id>` entry, the balance increment and the day's counters. A repeated or
   concurrent notify, or an order check racing it, fails the order's condition and credits nothing.
4. Order checks (a delayed message every 15 minutes, and a read of a pending order) ask WeChat Pay: a
   payment whose notify was lost is credited the same way; an order still unpaid at its expiry is closed
   at WeChat Pay, then here."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import ValidationError

from photopipe.adapters.credits import CreditsRepository
from photopipe.adapters.orders import OrdersRepository
from photopipe.adapters.sqs import Queue
from photopipe.adapters.users import UsersRepository
from photopipe.adapters.wechatpay import WechatPayClient
from photopipe.errors import (
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    PhotopipeError,
    ServiceUnavailableError,
    TransientError,
    UnauthorizedError,
)
from photopipe.models import (
    CURRENCY,
    PAYABLE_ORDER_STATES,
    TRADE_DEAD_STATES,
    CreditEntry,
    CreditPackage,
    EntryKind,
    Order,
    OrderCheckMessage,
    OrderState,
    PayMethod,
    WechatLink,
    WechatTransaction,
    purchase_entry_id,
    utcnow_iso,
)
from photopipe.observability import logger, metrics
from photopipe.usecases.credits import Credits
from photopipe.usecases.insights import last_days

CHECK_EVERY_S = 900  # SQS's longest delay
NOT_CONFIGURED = (
    "payments are not configured here: deploy with the WechatPayMchId and WechatAppId parameters "
    "(WECHAT_PAY_MCHID, WECHAT_APPID) and put the merchant's keys in the secret WECHAT_PAY_SECRET_ID names"
)
PAYMENT_COUNTERS = ("orders_created", "orders_paid", "revenue_fen", "credits_sold")

NotifyOutcome = Literal["credited", "already_credited", "ignored", "not_credited", "review", "rejected"]


@dataclass(frozen=True)
class NotifyAnswer:
    """What to answer WeChat Pay: 2xx means "received, do not send again"; anything else makes it retry."""

    status: int
    outcome: NotifyOutcome
    message: str

    @property
    def body(self) -> dict[str, str]:
        # WeChat Pay's own format for the answer: {"code": "SUCCESS" | "FAIL", "message"}.
        return {"code": "SUCCESS" if self.status < 300 else "FAIL", "message": self.message}


@dataclass(frozen=True)
class OrderView:
    order: Order
    jsapi: dict[str, str] | None = None


def _day() -> str:
    return datetime.now(UTC).date().isoformat()


@dataclass(frozen=True)
class Payments:
    orders: OrdersRepository
    ledger: CreditsRepository
    credits: Credits
    users: UsersRepository | None  # None where nothing links accounts (the order-checks function)
    checks: Queue
    packages: tuple[CreditPackage, ...]
    wechat: WechatPayClient | None  # None: payments are not configured
    trade_prefix: str
    order_ttl_seconds: int = 7200
    query_after_seconds: int = 30
    clock: Callable[[], float] = time.time

    # ------------------------------------------------------------------ price list
    def package(self, package_id: str) -> CreditPackage:
        for p in self.packages:
            if p.package_id == package_id:
                return p
        known = ", ".join(p.package_id for p in self.packages)
        raise NotFoundError(f"no package {package_id!r}; the packages are {known}", code="unknown_package")

    def _client(self) -> WechatPayClient:
        if self.wechat is None:
            raise ServiceUnavailableError(NOT_CONFIGURED, code="payments_unavailable")
        return self.wechat

    # ------------------------------------------------------------------ orders
    def create_order(
        self, user_id: str, package_id: str, method: PayMethod, *, notify_url: str, openid: str | None = None
    ) -> OrderView:
        wechat = self._client()
        package = self.package(package_id)
        if method == PayMethod.JSAPI:
            openid = openid or (self.users.wechat_openid(user_id) if self.users else None)
            if not openid:
                raise BadRequestError(
                    "a JSAPI order needs the payer's openid: link WeChat first (POST /api/v1/auth/wechat with the "
                    "wx.login() code) or send openid",
                    code="openid_required",
                )
        now = self.clock()
        created = utcnow_iso()
        order = Order(
            order_id=uuid.uuid4().hex,
            out_trade_no=self._trade_no(now),
            user_id=user_id,
            package_id=package.package_id,
            credits=package.credits,
            amount=package.amount,
            currency=CURRENCY,
            description=package.label,
            method=method,
            state=OrderState.PENDING,
            openid=openid if method == PayMethod.JSAPI else None,
            notify_url=notify_url,
            expires_at=now + self.order_ttl_seconds,
            created_at=created,
            updated_at=created,
        )
        self.credits.open(user_id)  # the account exists before anything can be credited to it
        self.orders.create(order, also=[self.orders.counters_update(_day(), {"orders_created": 1})])
        try:
            self._schedule_check(order)
        except PhotopipeError:
            self.orders.update(
                order.order_id,
                from_states=(OrderState.PENDING,),
                to_state=OrderState.FAILED,
                set_fields={"error": "its expiry check could not be scheduled; it was never placed"},
            )
            raise
        try:
            ref = wechat.create_order(
                method,
                out_trade_no=order.out_trade_no,
                description=order.description,
                amount=order.amount,
                notify_url=notify_url,
                expires_at=order.expires_at,
                attach=order.order_id,
                openid=order.openid,
            )
        except TransientError:
            # Maybe placed, maybe not: it stays pending; its checks ask WeChat Pay and close it.
            raise
        except PhotopipeError as e:
            self.orders.update(
                order.order_id,
                from_states=(OrderState.PENDING,),
                to_state=OrderState.FAILED,
                set_fields={"error": e.message},
            )
            raise
        field = "code_url" if method == PayMethod.NATIVE else "prepay_id"
        placed = (
            self.orders.update(order.order_id, from_states=(OrderState.PENDING,), set_fields={field: ref})
            or order
        )
        logger.info(
            "order placed",
            extra={
                "order_id": order.order_id,
                "out_trade_no": order.out_trade_no,
                "amount": order.amount,
                "method": method.value,
            },
        )
        metrics.add_metric(name="OrdersCreated", unit=MetricUnit.Count, value=1)
        return self._view(placed)

    def _trade_no(self, now: float) -> str:
        """Unique per merchant, 6-32 characters: the stage's prefix, the UTC time, 12 random hex digits."""
        stamp = datetime.fromtimestamp(now, UTC).strftime("%y%m%d%H%M%S")
        return f"{self.trade_prefix}{stamp}{secrets.token_hex(6)}"[:32]

    def _view(self, order: Order) -> OrderView:
        jsapi = None
        if order.state == OrderState.PENDING and order.prepay_id and self.wechat is not None:
            jsapi = self.wechat.jsapi_parameters(order.prepay_id)
        return OrderView(order=order, jsapi=jsapi)

    def get_order(self, user_id: str, order_id: str) -> OrderView:
        """The order; a pending one is checked with WeChat Pay when it was last checked a while ago (so a
        client waiting on it sees a payment even if the notify is slow)."""
        order = self.orders.get(order_id)
        if order is None or order.user_id != user_id:
            raise NotFoundError(f"no order {order_id!r}", code="order_not_found")
        last = order.checked_at or datetime.fromisoformat(order.created_at).timestamp()
        if (
            order.state == OrderState.PENDING
            and self.wechat is not None
            and self.clock() - last >= self.query_after_seconds
        ):
            order = self.check(order)
        return self._view(order)

    def _schedule_check(self, order: Order) -> None:
        left = order.expires_at - self.clock()
        self.checks.send(
            OrderCheckMessage(order_id=order.order_id).model_dump(),
            delay_seconds=int(max(1, min(CHECK_EVERY_S, left + 1))),
        )

    def check_order(self, order_id: str) -> Order | None:
        """One order check (the order-checks queue): ask WeChat Pay; while it stays pending, look again in
        15 minutes (or at its expiry, when that comes first)."""
        order = self.orders.get(order_id)
        if order is None or order.state != OrderState.PENDING:
            return order
        order = self.check(order)
        if order.state == OrderState.PENDING:
            self._schedule_check(order)
        return order

    def check(self, order: Order) -> Order:
        """Ask WeChat Pay about a pending order: credit it if it was paid, close it if it expired unpaid."""
        wechat = self._client()
        now = self.clock()
        transaction = wechat.query(order.out_trade_no)
        order = (
            self.orders.update(
                order.order_id, from_states=(OrderState.PENDING,), set_fields={"checked_at": now}
            )
            or order
        )
        if transaction is not None and transaction.paid:
            return self._credit_or_review(order, transaction, source="order query")[0]
        dead = transaction is not None and transaction.trade_state in TRADE_DEAD_STATES
        if now < order.expires_at and not dead:
            return order
        # Expired (or dead at WeChat Pay): close it there first, so it can never be paid after we stop
        # waiting for it; a close that finds it paid means it was paid a moment ago: credit it.
        open_there = transaction is not None and transaction.trade_state != "CLOSED"
        if open_there and wechat.close(order.out_trade_no) == "paid":
            paid = wechat.query(order.out_trade_no)
            if paid is not None and paid.paid:
                return self._credit_or_review(order, paid, source="order query")[0]
            return order
        closed = self.orders.update(
            order.order_id,
            from_states=(OrderState.PENDING,),
            to_state=OrderState.CLOSED,
            set_fields={"closed_at": utcnow_iso()},
        )
        if closed is not None:
            logger.info(
                "unpaid order closed",
                extra={
                    "order_id": order.order_id,
                    "wechat_state": transaction.trade_state if transaction else None,
                },
            )
            return closed
        return self.orders.get(order.order_id) or order

    # ------------------------------------------------------------------ the notify callback
    def handle_notify(self, headers: Mapping[str, str], body: bytes) -> NotifyAnswer:
        """WeChat Pay's payment notify. Non-2xx when it cannot be verified (WeChat Pay sends it again); 2xx
        once it is handled, credited or not, so a repeated one is answered without crediting again."""
        if self.wechat is None:
            return NotifyAnswer(503, "rejected", "payments are not configured")
        try:
            notification, plaintext = self.wechat.open_notification(headers, body)
        except UnauthorizedError as e:
            logger.warning("notify refused", extra={"code": e.code, "reason": e.message})
            metrics.add_metric(name="NotifiesRefused", unit=MetricUnit.Count, value=1)
            return NotifyAnswer(401, "rejected", e.message)
        except BadRequestError as e:
            logger.warning("notify refused", extra={"code": e.code, "reason": e.message})
            return NotifyAnswer(400, "rejected", e.message)
        if not notification.event_type.startswith("TRANSACTION."):
            logger.info(
                "notify of another kind acknowledged",
                extra={"event_type": notification.event_type, "id": notification.id},
            )
            return NotifyAnswer(200, "ignored", f"{notification.event_type} is not handled here")
        try:
            transaction = WechatTransaction.model_validate_json(plaintext)
        except ValidationError:
            logger.warning("notify resource is not a transaction", extra={"id": notification.id})
            return NotifyAnswer(400, "rejected", "the resource is not a transaction")
        order = self.orders.find_by_out_trade_no(transaction.out_trade_no)
        if order is None:
            # Signed by WeChat Pay but unknown here: answer non-2xx so it is sent again (and alarmed on).
            logger.error(
                "notify for an unknown order",
                extra={"out_trade_no": transaction.out_trade_no, "id": notification.id},
            )
            metrics.add_metric(name="NotifiesForUnknownOrders", unit=MetricUnit.Count, value=1)
            return NotifyAnswer(404, "rejected", f"no order {transaction.out_trade_no}")
        if notification.event_type != "TRANSACTION.SUCCESS" or not transaction.paid:
            return NotifyAnswer(
                200, "ignored", f"{notification.event_type} {transaction.trade_state}: nothing to credit"
            )
        if order.state == OrderState.PAID:
            logger.info("repeated notify for a paid order", extra={"order_id": order.order_id})
            return NotifyAnswer(200, "already_credited", "already credited")
        _, outcome = self._credit_or_review(order, transaction, source="notify")
        messages = {
            "credited": "credited",
            "already_credited": "already credited",
            "review": "kept for review: the payment does not match the order",
            "not_credited": "WeChat Pay does not confirm this payment; nothing was credited",
        }
        return NotifyAnswer(200, outcome, messages.get(outcome, outcome))

    # ------------------------------------------------------------------ crediting
    def _mismatches(self, order: Order, transaction: WechatTransaction) -> list[str]:
        wechat = self._client()
        problems = []
        if transaction.mchid != wechat.mchid:
            problems.append(f"mchid {transaction.mchid}")
        if transaction.appid != wechat.appid:
            problems.append(f"appid {transaction.appid}")
        if transaction.out_trade_no != order.out_trade_no:
            problems.append(f"out_trade_no {transaction.out_trade_no}")
        amount = transaction.amount
        if amount is None or amount.total != order.amount or (amount.currency or CURRENCY) != order.currency:
            problems.append(
                f"amount {amount.total if amount else None} {amount.currency if amount else ''} (order: {order.amount})"
            )
        return problems

    def _credit_or_review(
        self, order: Order, transaction: WechatTransaction, *, source: str
    ) -> tuple[Order, NotifyOutcome]:
        """Credit a paid transaction that matches the order; keep one that does not for a person."""
        problems = self._mismatches(order, transaction)
        if problems and source == "notify":
            # The notify and the order disagree: WeChat Pay's own answer decides.
            logger.warning(
                "notify disagrees with the order; asking WeChat Pay",
                extra={"order_id": order.order_id, "problems": problems},
            )
            confirmed = self._client().query(order.out_trade_no)
            if confirmed is None or not confirmed.paid:
                logger.warning("WeChat Pay does not confirm the payment", extra={"order_id": order.order_id})
                metrics.add_metric(name="NotifiesNotConfirmed", unit=MetricUnit.Count, value=1)
                return order, "not_credited"
            transaction, problems = confirmed, self._mismatches(order, confirmed)
        if problems:
            logger.error(
                "paid transaction does not match the order; kept for review",
                extra={"order_id": order.order_id, "problems": problems},
            )
            metrics.add_metric(name="OrdersForReview", unit=MetricUnit.Count, value=1)
            reviewed = self.orders.update(
                order.order_id,
                from_states=PAYABLE_ORDER_STATES,
                to_state=OrderState.REVIEW,
                set_fields={
                    "review_reason": "; ".join(problems),
                    "transaction_id": transaction.transaction_id or "",
                },
            )
            return reviewed or self.orders.get(order.order_id) or order, "review"
        return self._settle(order, transaction)

    def _settle(self, order: Order, transaction: WechatTransaction) -> tuple[Order, NotifyOutcome]:
        transaction_id = transaction.transaction_id or ""
        price = f"¥{order.amount // 100}.{order.amount % 100:02d}"
        counters = {"orders_paid": 1, "revenue_fen": order.amount, "credits_sold": order.credits}

        def attempt() -> str:
            now = utcnow_iso()
            entry = CreditEntry(
                entry_id=purchase_entry_id(order.order_id),
                user_id=order.user_id,
                kind=EntryKind.PURCHASE,
                amount=order.credits,
                reason=f"bought {order.package_id} for {price} (WeChat Pay {transaction_id})",
                order_id=order.order_id,
                at=now,
            )
            return self.orders.settle(
                order,
                transaction_id=transaction_id,
                paid_at=now,
                entry=self.ledger.entry_put(entry),
                balance=self.ledger.balance_add(order.user_id, order.credits),
                counters=[self.orders.counters_update(_day(), counters)],
            )

        result = attempt()
        if result == "no_account":
            self.credits.open(order.user_id)
            result = attempt()
        settled = self.orders.get(order.order_id) or order
        if result != "paid":
            # Someone else (a concurrent notify, an order check) got there first, or it is under review.
            return settled, "already_credited" if settled.state == OrderState.PAID else "review"
        logger.info(
            "order paid and credited",
            extra={
                "order_id": order.order_id,
                "credits": order.credits,
                "amount": order.amount,
                "transaction_id": transaction_id,
            },
        )
        metrics.add_metric(name="OrdersPaid", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="RevenueFen", unit=MetricUnit.Count, value=order.amount)
        return settled, "credited"

    # ------------------------------------------------------------------ WeChat login
    def link_wechat(self, user_id: str, code: str) -> WechatLink:
        wechat = self._client()
        if self.users is None:
            raise ConfigurationError(
                "linking WeChat accounts needs the users table here", code="missing_setting"
            )
        openid = wechat.code2session(code)
        link = WechatLink(user_id=user_id, openid=openid, linked_at=utcnow_iso())
        self.users.link_wechat(link, wechat.appid)
        logger.info("WeChat account linked", extra={"user_id": user_id})
        return link

    # ------------------------------------------------------------------ statistics
    def daily(self, days: int) -> dict[str, Any]:
        """Orders and revenue per UTC day (counters written with each order and payment, read by key)."""
        per_day = self.orders.days(last_days(days))
        counts = {day: {k: int(c.get(k, 0)) for k in PAYMENT_COUNTERS} for day, c in per_day.items()}
        totals = {k: sum(c[k] for c in counts.values()) for k in PAYMENT_COUNTERS}
        rows = [{"day": day, **c} for day, c in counts.items()]
        return {"currency": CURRENCY, "days": rows, "totals": totals}
