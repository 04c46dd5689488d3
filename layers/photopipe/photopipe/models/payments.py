"""Buying credits with WeChat Pay (API v3): the price list, our orders, and WeChat Pay's own messages as
they arrive on the wire (the transaction in a notify or an order query, the notify envelope).

Money is integer fen (1 CNY = 100 fen) everywhere, as WeChat Pay counts it; never a float.

Order states: `pending → paid | closed`, or `review` when WeChat Pay reports a payment that does not match
the order (kept for a person; never credited automatically), or `failed` when WeChat Pay refused to
create it. `closed → paid` is allowed: money that arrived is always credited."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from pydantic import BaseModel, ConfigDict, Field, Json, TypeAdapter, field_validator

CURRENCY = "CNY"
# WeChat Pay's trade states (the `trade_state` of a transaction).
TRADE_SUCCESS = "SUCCESS"
TRADE_OPEN_STATES = frozenset({"NOTPAY", "USERPAYING"})
TRADE_DEAD_STATES = frozenset({"CLOSED", "REVOKED", "PAYERROR"})


class CreditPackage(BaseModel):
    """One entry of the price list (configuration: the `CreditPackages` template parameter)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    package_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    credits: int = Field(gt=0, le=100_000)
    amount: int = Field(gt=0, le=10_000_000, description="Price in fen (100 = ¥1.00)")
    description: str = Field("", max_length=100, description="Shown to the payer by WeChat Pay")

    @field_validator("description")
    @classmethod
    def _fits_wechat(cls, value: str) -> str:
        if len(value.encode()) > 127:  # WeChat Pay's limit on `description`, in UTF-8 bytes
            raise ValueError("description must fit in 127 bytes of UTF-8")
        return value

    @property
    def label(self) -> str:
        return self.description or f"{self.credits} photopipe credits"


_PACKAGES = TypeAdapter(list[CreditPackage])


def parse_packages(text: str) -> tuple[CreditPackage, ...]:
    """The price list from its JSON form: `[{"package_id", "credits", "amount", "description"?}, ...]`."""
    packages = tuple(_PACKAGES.validate_python(json.loads(text)))
    ids = [p.package_id for p in packages]
    if not packages or len(set(ids)) != len(ids):
        raise ValueError("the price list needs at least one package and unique package_id values")
    return packages


class PayMethod(StrEnum):
    NATIVE = "native"  # a QR code (code_url) the payer scans with WeChat
    JSAPI = "jsapi"  # inside WeChat (mini-program, official account): signed parameters for wx.requestPayment


class OrderState(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    CLOSED = "closed"
    REVIEW = "review"
    FAILED = "failed"


PAYABLE_ORDER_STATES = frozenset({OrderState.PENDING, OrderState.CLOSED})


class Order(BaseModel):
    model_config = ConfigDict(extra="ignore")

    order_id: str
    out_trade_no: str = Field(description="Our trade number at WeChat Pay (unique per merchant)")
    user_id: str
    package_id: str
    credits: int = Field(gt=0)
    amount: int = Field(gt=0, description="Fen")
    currency: str = CURRENCY
    description: str
    method: PayMethod
    state: OrderState
    openid: str | None = None
    code_url: str | None = None
    prepay_id: str | None = None
    transaction_id: str | None = None
    notify_url: str | None = None
    expires_at: float = Field(description="Epoch seconds: WeChat Pay refuses payment after this")
    checked_at: float | None = Field(None, description="When WeChat Pay was last asked about it")
    review_reason: str | None = None
    error: str | None = None
    created_at: str
    updated_at: str
    paid_at: str | None = None
    closed_at: str | None = None

    def item(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class WechatPayer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    openid: str | None = None


class WechatAmount(BaseModel):
    model_config = ConfigDict(extra="ignore")
    total: int
    payer_total: int | None = None
    currency: str = CURRENCY
    payer_currency: str | None = None


class WechatTransaction(BaseModel):
    """A transaction as WeChat Pay describes it: the decrypted `resource` of a TRANSACTION.* notify, or the
    answer of `GET /v3/pay/transactions/out-trade-no/{out_trade_no}`."""

    model_config = ConfigDict(extra="ignore")

    appid: str
    mchid: str
    out_trade_no: str
    transaction_id: str | None = None
    trade_type: str | None = None
    trade_state: str
    trade_state_desc: str | None = None
    success_time: str | None = None
    attach: str | None = None
    payer: WechatPayer | None = None
    amount: WechatAmount | None = None

    @property
    def paid(self) -> bool:
        return self.trade_state == TRADE_SUCCESS


class EncryptedResource(BaseModel):
    model_config = ConfigDict(extra="ignore")
    algorithm: str
    ciphertext: str
    nonce: str
    associated_data: str = ""
    original_type: str | None = None


class WechatNotification(BaseModel):
    """The envelope of a WeChat Pay notify (its resource is AES-256-GCM encrypted with the APIv3 key)."""

    model_config = ConfigDict(extra="ignore")

    id: str
    create_time: str | None = None
    event_type: str
    resource_type: str
    summary: str | None = None
    resource: EncryptedResource

    @field_validator("resource_type")
    @classmethod
    def _encrypted(cls, value: str) -> str:
        if value != "encrypt-resource":
            raise ValueError(f"resource_type {value!r} is not encrypt-resource")
        return value


class WechatLink(BaseModel):
    """A user's WeChat identity (the mini-program's openid, from code2session)."""

    model_config = ConfigDict(frozen=True)
    user_id: str
    openid: str
    linked_at: str


class OrderCheckMessage(BaseModel):
    """The body of an order-checks message: look at this order again (WeChat Pay is asked; an unpaid one
    is closed once it expires)."""

    model_config = ConfigDict(extra="ignore")
    order_id: str = Field(min_length=1)


class OrderCheckRecord(SqsRecordModel):
    body: Json[OrderCheckMessage]
