"""Request and response bodies of the HTTP API (validated by Powertools; they generate /openapi.json)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from pydantic.json_schema import SkipJsonSchema

from photopipe.models import (
    CURRENCY,
    MAX_BATCH_IMAGES,
    ClassificationSource,
    CreditEntry,
    CreditPackage,
    EnhanceParams,
    EntryKind,
    ImageClassification,
    ImageRecord,
    ImageState,
    Job,
    JobError,
    JobState,
    Order,
    OrderState,
    PayMethod,
    User,
    WorkerRecord,
)

Username = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.-]{3,32}$")]
Email = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
]
Password = Annotated[str, StringConstraints(min_length=8, max_length=256)]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$")]
PhashHex = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{16}$")]
# Ids the API issues (image, job, batch ids are uuid4 hex); anything else is refused (422) before any
# table is read, so an empty or odd string never reaches DynamoDB.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
ImageId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=ID_PATTERN)]
# What /auth/login and /auth/register return: 32 random bytes, base64url.
RefreshToken = Annotated[str, StringConstraints(min_length=20, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")]


def _unique(ids: list[str]) -> list[str]:
    if len(set(ids)) != len(ids):
        raise ValueError("the list names an id more than once")
    return ids


# A batch names each image once: the schema says so (`uniqueItems`) and validation refuses duplicates (422).
UniqueIds = Annotated[list[ImageId], AfterValidator(_unique), Field(json_schema_extra={"uniqueItems": True})]


class ErrorDetail(BaseModel):
    code: str = Field(description="snake_case, stable: what a client branches on")
    message: str = Field(description="What happened and what to do, for a person")
    limit: str | None = Field(None, description="429: the limit that was reached")
    retry_after: int | None = Field(None, description="429: seconds until it resets (also `Retry-After`)")
    resets_at: str | None = Field(None, description="429: when it resets (ISO-8601 UTC)")


class ErrorBody(BaseModel):
    error: ErrorDetail


class UserOut(BaseModel):
    user_id: str
    username: str
    email: str
    created_at: str
    admin: bool = Field(False, description="May read the global statistics")

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls.model_validate(user.model_dump())


class RegisterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Username
    email: Email
    password: Password


def _one_of(*names: str) -> dict[str, Any]:
    """JSON Schema for "at least one of these string fields is present" (what a model validator checks)."""
    return {"anyOf": [{"required": [n], "properties": {n: {"type": "string"}}} for n in names]}


def _refuse_nulls(data: Any) -> Any:
    """`null` is not a value of an optional string here (the schema says string): 422, not "absent"."""
    if isinstance(data, dict):
        nulls = sorted(str(k) for k, v in data.items() if v is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)}: send a string or leave the field out, not null")
    return data


LoginName = Annotated[str, StringConstraints(min_length=1, max_length=254)]


class LoginRequest(BaseModel):
    # One of username and email is required: said in the schema too (anyOf), so a client knows.
    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_of("username", "email"))
    username: LoginName | SkipJsonSchema[None] = Field(None, description="Username or email")
    email: LoginName | SkipJsonSchema[None] = None
    password: str = Field(max_length=256)

    _no_nulls = model_validator(mode="before")(_refuse_nulls)

    @model_validator(mode="after")
    def one_login(self) -> LoginRequest:
        if not (self.username or self.email):
            raise ValueError("send a username or an email")
        return self

    @property
    def login(self) -> str:
        return self.username or self.email or ""


class SessionOut(BaseModel):
    token: str = Field(description="Access token (JWT) for `Authorization: Bearer`; short-lived")
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret
    expires_in: int = Field(description="Seconds the access token is valid")
    refresh_token: str = Field(description="Spend it once at /auth/refresh for the next pair; keep it secret")
    refresh_expires_in: int = Field(description="Seconds the refresh token is valid if unused")
    user: UserOut


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: RefreshToken


class QuotasOut(BaseModel):
    uploads_per_day: int
    stored_bytes: int
    active_jobs: int


class UsageOut(BaseModel):
    uploads_today: int
    stored_bytes: int
    active_jobs: int
    limits: QuotasOut
    uploads_reset_at: str = Field(description="When the daily upload count starts again (midnight UTC)")


class ProfileOut(BaseModel):
    user: UserOut
    usage: UsageOut | None = None


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    filename: str = Field(min_length=1, max_length=1024)
    content_type: str = Field(
        min_length=3,
        max_length=100,
        description="An image type (GET /info lists them); anything else is 400 unsupported_media_type",
        examples=["image/jpeg", "image/png", "image/heic"],
    )
    size: int = Field(gt=0, description="Size of the file in bytes")
    sha256: Sha256Hex | None = Field(None, description="Optional; lets a client check the cache first")


class PresignedPostOut(BaseModel):
    url: str
    fields: dict[str, str]


class UploadOut(BaseModel):
    image_id: str
    key: str
    upload: PresignedPostOut
    expires_in: int


class ImageUrls(BaseModel):
    original: str | None = None
    thumbnail: str | None = None
    preview: str | None = None


class ImageOut(BaseModel):
    image_id: str
    state: ImageState
    reason: str | None = None
    reason_message: str | None = None
    filename: str
    content_type: str
    format: str | None = None
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    sha256: str | None = None
    phash: str | None = None
    classification: ImageClassification | None = None
    created_at: str
    updated_at: str
    urls: ImageUrls | None = None

    @classmethod
    def of(cls, record: ImageRecord, urls: ImageUrls | None = None) -> ImageOut:
        return cls.model_validate({**record.model_dump(), "urls": urls})


class ImageList(BaseModel):
    items: list[ImageOut]
    next_cursor: str | None = None


class BatchDeleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Duplicates are accepted (each image is deleted once); ids are checked before any table is read.
    image_ids: list[ImageId] = Field(min_length=1, max_length=100)


class BatchDeleteFailureOut(BaseModel):
    image_id: str
    code: str
    message: str = Field(
        description="What S3 or DynamoDB refused; the photo is kept and can be deleted again"
    )


class BatchDeleteOut(BaseModel):
    deleted: list[str]
    not_found: list[str]
    failed: list[BatchDeleteFailureOut] = Field(
        default_factory=list, description="Photos that could not be deleted, each with the reason"
    )


class FleetHealthOut(BaseModel):
    healthy: int
    unhealthy: int


class HealthOut(BaseModel):
    status: str
    version: str
    fleet: FleetHealthOut | None = Field(None, description="GPU workers by heartbeat (healthy: within 90 s)")


class InfoOut(BaseModel):
    name: str
    version: str
    stage: str
    limits: dict[str, int]
    accepted_content_types: list[str]
    websocket_url: str | None = Field(
        None, description="Live updates: open {websocket_url}?token=<JWT> (null when the stack has none)"
    )
    docs_url: str | None = Field(None, description="Swagger UI for this API")


class CheckCacheRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: Sha256Hex = Field(description="SHA-256 of the photo's bytes, hex")
    phash: PhashHex | None = Field(None, description="64-bit perceptual hash (16 hex) for near duplicates")


class CachedClassificationOut(BaseModel):
    category: str
    label_zh: str
    label_en: str
    confidence: float
    reason: str
    model: str
    prompt_version: str


class CheckCacheOut(BaseModel):
    hit: bool
    source: ClassificationSource | None = None
    distance: int | None = None
    classification: CachedClassificationOut | None = None


class ImageClassificationOut(BaseModel):
    image_id: str
    state: ImageState
    classification: ImageClassification | None = None
    reason: str | None = None
    reason_message: str | None = None


class StatsFigures(BaseModel):
    requests: int
    exact_hits: int
    near_hits: int
    cache_hits: int
    misses: int
    failures: int
    skipped: int
    hit_rate: float
    llm_calls: int
    input_tokens: int
    output_tokens: int
    distinct_users: int
    estimated_cost: float
    cost_saved: float
    currency: str


class DayStats(StatsFigures):
    day: str


class CacheStatsOut(BaseModel):
    days: list[DayStats]
    totals: StatsFigures


class CategoryCount(BaseModel):
    category: str
    label_zh: str
    label_en: str
    count: int
    share: float


class CategoryStatsOut(BaseModel):
    days: int
    total: int
    categories: list[CategoryCount]


# ------------------------------------------------------------------ enhancement
class EnhanceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_id: ImageId
    params: EnhanceParams = Field(default_factory=EnhanceParams)


class EnhanceBatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image_ids: UniqueIds = Field(min_length=1, max_length=MAX_BATCH_IMAGES)
    params: EnhanceParams = Field(default_factory=EnhanceParams)


class JobOut(BaseModel):
    job_id: str
    image_id: str
    state: JobState
    progress: int
    params: EnhanceParams
    faces: int | None = None
    timings: dict[str, float] = Field(default_factory=dict, description="Milliseconds by stage")
    notes: list[str] = Field(default_factory=list)
    error: JobError | None = None
    result_url: str | None = Field(None, description="Presigned link to the result, once completed")
    width: int | None = None
    height: int | None = None
    batch_id: str | None = None
    attempts: int = 0
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, job: Job, result_url: str | None = None) -> JobOut:
        return cls.model_validate({**job.model_dump(), "result_url": result_url})


class JobAcceptedOut(JobOut):
    status_url: str


class BatchAcceptedOut(BaseModel):
    batch_id: str
    status_url: str
    jobs: list[JobOut]


class BatchOut(BaseModel):
    batch_id: str
    total: int
    done: bool
    counts: dict[str, int]
    jobs: list[JobOut]


class ExportPendingOut(BaseModel):
    status: str = "preparing"
    retry_after: int
    message: str


# ------------------------------------------------------------------ GPU fleet (webhook)
class RegisterWorkerRequest(BaseModel):
    """A worker's registration. The old gateway's `{ip, port, secret}` body is still accepted."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_one_of("worker_id", "ip"))
    worker_id: str | None = Field(None, min_length=1, max_length=128)
    url: str | None = Field(None, max_length=512)
    ip: str | None = Field(None, min_length=1, max_length=64)
    port: int | None = Field(None, ge=1, le=65535)
    provider: str | None = Field(None, max_length=64)
    max_batch: int | None = Field(None, ge=1, le=4096)
    version: str | None = Field(None, max_length=64)
    secret: str | None = Field(None, max_length=512, description="Or send the X-Fleet-Secret header")


class UnregisterWorkerRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra=_one_of("worker_id", "ip"))
    worker_id: str | None = Field(None, min_length=1, max_length=128)
    ip: str | None = Field(None, min_length=1, max_length=64)
    port: int | None = Field(None, ge=1, le=65535)
    secret: str | None = Field(None, max_length=512)


class WorkerOut(BaseModel):
    worker_id: str
    url: str | None = None
    provider: str | None = None
    max_batch: int | None = None
    version: str | None = None
    healthy: bool
    registered_at: float
    heartbeat_at: float

    @classmethod
    def of(cls, record: WorkerRecord) -> WorkerOut:
        return cls.model_validate(record.model_dump())


class RegisterWorkerOut(BaseModel):
    success: bool = True
    worker: WorkerOut


class UnregisterWorkerOut(BaseModel):
    success: bool = True
    removed: bool


class ServersOut(BaseModel):
    healthy: int
    unhealthy: int
    servers: list[WorkerOut]


# ------------------------------------------------------------------ credits and payments
OpenId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{6,128}$")]


class CreditEntryOut(BaseModel):
    entry_id: str
    kind: EntryKind
    amount: int = Field(description="Credits added (positive) or spent (negative)")
    reason: str
    order_id: str | None = None
    job_id: str | None = None
    at: str

    @classmethod
    def of(cls, entry: CreditEntry) -> CreditEntryOut:
        return cls.model_validate(entry.model_dump())


class CreditsOut(BaseModel):
    balance: int = Field(description="Credits left: one enhances one photo")
    entries: list[CreditEntryOut] = Field(description="The ledger, newest first")
    next_cursor: str | None = None
    packages_url: str = Field(description="Where the packages to buy are listed")


class PackageOut(BaseModel):
    package_id: str
    credits: int
    amount: int = Field(description="Price in fen (100 = ¥1.00)")
    currency: str
    price: str = Field(description="The price for a person, e.g. ¥1.00")
    description: str

    @classmethod
    def of(cls, package: CreditPackage) -> PackageOut:
        return cls(
            package_id=package.package_id,
            credits=package.credits,
            amount=package.amount,
            currency=CURRENCY,
            price=f"¥{package.amount // 100}.{package.amount % 100:02d}",
            description=package.label,
        )


class PackagesOut(BaseModel):
    packages: list[PackageOut]
    payments_enabled: bool = Field(description="False: WeChat Pay is not configured on this deployment")


class CreateOrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    package_id: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    method: PayMethod = Field(PayMethod.NATIVE, description="native: a QR code; jsapi: inside WeChat")
    openid: OpenId | None = Field(
        None, description="jsapi: the payer (default: the openid linked with /auth/wechat)"
    )


class JsapiParamsOut(BaseModel):
    """What the mini-program passes to `wx.requestPayment` (signed with the merchant key)."""

    appId: str  # WeChat's own field names
    timeStamp: str
    nonceStr: str
    package: str
    signType: str
    paySign: str


class OrderOut(BaseModel):
    order_id: str
    out_trade_no: str
    state: OrderState
    package_id: str
    credits: int
    amount: int = Field(description="Fen")
    currency: str
    method: PayMethod
    code_url: str | None = Field(None, description="native: show it as a QR code for WeChat to scan")
    jsapi: JsapiParamsOut | None = Field(None, description="jsapi: the parameters for wx.requestPayment")
    expires_at: str = Field(description="Unpaid after this, the order is closed")
    created_at: str
    paid_at: str | None = None
    closed_at: str | None = None
    transaction_id: str | None = Field(None, description="WeChat Pay's number for the payment, once paid")
    review_reason: str | None = None
    status_url: str

    @classmethod
    def of(cls, order: Order, jsapi: dict[str, str] | None, status_url: str) -> OrderOut:
        return cls.model_validate(
            {
                **order.model_dump(),
                "expires_at": datetime.fromtimestamp(order.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "jsapi": jsapi,
                "status_url": status_url,
            }
        )


class WechatLoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")] = Field(
        description="The code from wx.login() in the mini-program"
    )


class WechatLinkOut(BaseModel):
    openid: str
    linked_at: str


class PaymentFigures(BaseModel):
    orders_created: int
    orders_paid: int
    revenue_fen: int
    credits_sold: int


class PaymentDay(PaymentFigures):
    day: str


class PaymentStatsOut(BaseModel):
    currency: str
    days: list[PaymentDay]
    totals: PaymentFigures


class WechatNotifyAnswerOut(BaseModel):
    """WeChat Pay's own answer format: SUCCESS with a 2xx, FAIL otherwise (then it sends the notify again)."""

    code: str
    message: str


# ------------------------------------------------------------------ the stats page and the classify test
class PromptCategoryOut(BaseModel):
    category: str
    label_zh: str
    label_en: str
    description: str = Field(description="What the model is told the category means")


class PromptOut(BaseModel):
    """The classification prompt in use (read-only: it changes with a release, and its version is part of
    every cache key)."""

    version: str
    model: str
    text: str
    retry_text: str = Field(description="What is added after an answer outside the schema")
    categories: list[PromptCategoryOut]


class ClassifyOut(BaseModel):
    """`POST /classify`: the category of the photo sent, from the caches or the model."""

    category: str
    label_zh: str
    label_en: str
    confidence: float
    reason: str
    source: ClassificationSource
    distance: int | None = Field(None, description="Near duplicates: Hamming distance of the match, bits")
    model: str
    prompt_version: str
    format: str
    width: int
    height: int
    bytes: int
    sha256: str
    phash: str
