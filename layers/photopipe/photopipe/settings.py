"""Process settings: one validated pydantic model per process, read from the environment once (by the
handler's factory, never at import time), failing fast with the name of the variable at fault.

Domain code receives values (`bucket: str`), never reads `os.environ` itself."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator

from photopipe.errors import ConfigurationError

MB = 1024 * 1024


class _EnvSettings(BaseModel):
    """Fields are declared with `alias=ENV_VAR`; `from_env` reads only those variables."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        source = os.environ if env is None else env
        data: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            var = field.alias or name
            if var in source and source[var] != "":
                data[var] = source[var]
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                var = str(err["loc"][0]) if err["loc"] else "?"
                if err["type"] == "missing":
                    problems.append(f"{var} is not set")
                else:
                    problems.append(f"{var}={source.get(var)!r}: {err['msg']}")
            raise ConfigurationError(
                f"{cls.__name__}: " + "; ".join(problems) + " (set it in the environment or template.yaml)",
                code="missing_setting",
            ) from e


class CommonSettings(_EnvSettings):
    stage: str = Field("dev", alias="STAGE")
    media_bucket: str = Field(alias="MEDIA_BUCKET")
    images_table: str = Field(alias="IMAGES_TABLE")
    idempotency_table: str = Field(alias="IDEMPOTENCY_TABLE")
    max_upload_bytes: int = Field(50 * MB, alias="PHOTOPIPE_MAX_UPLOAD_BYTES", ge=1024)
    max_pixels: int = Field(100_000_000, alias="PHOTOPIPE_MAX_PIXELS", ge=1_000_000)


class ClassifierSettings(_EnvSettings):
    """Which vision LLM classifies photos, and where its key comes from (the SDKs' own variable names)."""

    classifier: Literal["auto", "dashscope", "openai", "none"] = Field("auto", alias="PHOTOPIPE_CLASSIFIER")
    dashscope_api_key: SecretStr | None = Field(None, alias="DASHSCOPE_API_KEY")
    dashscope_api_key_secret_id: str | None = Field(None, alias="DASHSCOPE_API_KEY_SECRET_ID")
    dashscope_model: str = Field("qwen-vl-plus", alias="DASHSCOPE_MODEL")
    openai_base_url: str | None = Field(None, alias="PHOTOPIPE_OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(None, alias="PHOTOPIPE_OPENAI_API_KEY")
    openai_api_key_secret_id: str | None = Field(None, alias="PHOTOPIPE_OPENAI_API_KEY_SECRET_ID")
    openai_model: str = Field("qwen-vl-plus", alias="PHOTOPIPE_OPENAI_MODEL")

    @property
    def provider(self) -> Literal["dashscope", "openai", "none"]:
        """`auto` means DashScope when a DashScope key is configured, else none."""
        if self.classifier != "auto":
            return self.classifier
        has_key = self.dashscope_api_key is not None or self.dashscope_api_key_secret_id is not None
        return "dashscope" if has_key else "none"

    @property
    def model(self) -> str:
        return self.openai_model if self.provider == "openai" else self.dashscope_model


class EnhanceApiSettings(_EnvSettings):
    """What the API needs for enhancement jobs and the GPU fleet."""

    jobs_table: str = Field(alias="JOBS_TABLE")
    workers_table: str = Field(alias="WORKERS_TABLE")
    gpu_jobs_queue_url: str = Field(alias="GPU_JOBS_QUEUE_URL")
    exports_queue_url: str = Field(alias="EXPORTS_QUEUE_URL")
    fleet_secret_id: str = Field(alias="FLEET_SECRET_ID")
    # false: with no healthy worker, POST /enhance answers 503; true: accept and queue (scale from zero).
    enhance_queue_when_no_workers: bool = Field(False, alias="ENHANCE_QUEUE_WHEN_NO_WORKERS")
    # The SSM parameter the GPU worker stack writes (see adapters/fleet_deployment.py); unset: no such check.
    gpu_fleet_parameter: str | None = Field(None, alias="GPU_FLEET_PARAMETER")


# The price list: 10 credits for ¥1, 60 for ¥5, 150 for ¥10 (amounts in fen).
DEFAULT_CREDIT_PACKAGES = (
    '[{"package_id": "credits-10", "credits": 10, "amount": 100, "description": "10 photopipe credits"}, '
    '{"package_id": "credits-60", "credits": 60, "amount": 500, "description": "60 photopipe credits"}, '
    '{"package_id": "credits-150", "credits": 150, "amount": 1000, "description": "150 photopipe credits"}]'
)
WECHAT_PAY_BASE_URL = "https://api.mch.weixin.qq.com"
WECHAT_API_BASE_URL = "https://api.weixin.qq.com"


class CreditsSettings(_EnvSettings):
    credits_table: str = Field(alias="CREDITS_TABLE")
    # Credits every user gets once, the first time their balance is looked at (`FreeCredits` parameter).
    free_credits: int = Field(10, alias="PHOTOPIPE_FREE_CREDITS", ge=0, le=100_000)


class PaymentSettings(CreditsSettings):
    """Orders, the price list and WeChat Pay (API v3). Payments are off until the merchant id and app id
    are set; credits work without them."""

    stage: str = Field("dev", alias="STAGE")  # part of our trade numbers, so stages never collide
    orders_table: str = Field(alias="ORDERS_TABLE")
    order_checks_queue_url: str = Field(alias="ORDER_CHECKS_QUEUE_URL")
    # JSON: [{"package_id", "credits", "amount" (fen), "description"}, ...] (`CreditPackages` parameter);
    # checked when the price list is built (photopipe.models.parse_packages).
    credit_packages: str = Field(DEFAULT_CREDIT_PACKAGES, alias="PHOTOPIPE_CREDIT_PACKAGES", min_length=2)
    wechat_pay_mchid: str | None = Field(None, alias="WECHAT_PAY_MCHID", pattern=r"^[0-9]{6,32}$")
    wechat_appid: str | None = Field(None, alias="WECHAT_APPID", pattern=r"^[A-Za-z0-9_]{6,32}$")
    # Secrets Manager secret: the merchant private key and its serial, the APIv3 key, WeChat Pay's public
    # key (or platform certificates), the mini-program's AppSecret; JSON, see the README.
    wechat_pay_secret_id: str = Field(alias="WECHAT_PAY_SECRET_ID")
    wechat_pay_base_url: str = Field(WECHAT_PAY_BASE_URL, alias="WECHAT_PAY_BASE_URL", pattern=r"^https?://")
    wechat_api_base_url: str = Field(WECHAT_API_BASE_URL, alias="WECHAT_API_BASE_URL", pattern=r"^https?://")
    # Unset: https://<the API's own domain>/api/v1/payments/wechat/notify, from the order request.
    wechat_pay_notify_url: str | None = Field(None, alias="WECHAT_PAY_NOTIFY_URL", pattern=r"^https?://")
    order_ttl_seconds: int = Field(7200, alias="PHOTOPIPE_ORDER_TTL_SECONDS", ge=300, le=7 * 24 * 3600)
    # A pending order is checked with WeChat Pay when it is read this long after its last check.
    order_query_after_seconds: int = Field(30, alias="PHOTOPIPE_ORDER_QUERY_AFTER_SECONDS", ge=0, le=3600)

    @property
    def payments_enabled(self) -> bool:
        return bool(self.wechat_pay_mchid and self.wechat_appid)


class LimitSettings(_EnvSettings):
    """Per-user quotas and login-attempt limits (counters in the limits table)."""

    limits_table: str = Field(alias="LIMITS_TABLE")
    quota_uploads_per_day: int = Field(1000, alias="PHOTOPIPE_QUOTA_UPLOADS_PER_DAY", ge=1)
    quota_stored_bytes: int = Field(10 * 1024 * MB, alias="PHOTOPIPE_QUOTA_STORED_BYTES", ge=MB)
    quota_active_jobs: int = Field(20, alias="PHOTOPIPE_QUOTA_ACTIVE_JOBS", ge=1)
    login_window_seconds: int = Field(900, alias="PHOTOPIPE_LOGIN_WINDOW_SECONDS", ge=60)
    login_max_per_account: int = Field(10, alias="PHOTOPIPE_LOGIN_MAX_FAILURES_PER_ACCOUNT", ge=1)
    login_max_per_source: int = Field(100, alias="PHOTOPIPE_LOGIN_MAX_FAILURES_PER_SOURCE", ge=1)


class TokenSettings(_EnvSettings):
    """The access tokens: issued by the API, checked by it and by the WebSocket authorizer (same rules)."""

    jwt_secret_id: str = Field(alias="JWT_SECRET_ID")
    jwt_ttl_seconds: int = Field(3600, alias="JWT_TTL_SECONDS", ge=60)
    jwt_issuer: str = Field("photopipe", alias="JWT_ISSUER")
    jwt_audience: str = Field("photopipe-api", alias="JWT_AUDIENCE")


class ConnectionsSettings(_EnvSettings):
    """The WebSocket connections table ($connect / $disconnect)."""

    connections_table: str = Field(alias="CONNECTIONS_TABLE")
    # API Gateway closes every connection after 2 hours: a record outlives it by no more than that.
    connection_ttl_seconds: int = Field(7200, alias="PHOTOPIPE_CONNECTION_TTL_SECONDS", ge=60, le=7200)


class NotifySettings(ConnectionsSettings):
    """The notify function: the connections table and the WebSocket API it posts through."""

    # wss://<api>.execute-api.<region>.amazonaws.com/<stage> (the stack's WebSocketUrl output)
    websocket_url: str = Field(alias="WEBSOCKET_URL", pattern=r"^wss?://[^/]+")


class ApiSettings(
    CommonSettings, ClassifierSettings, EnhanceApiSettings, PaymentSettings, TokenSettings, LimitSettings
):
    users_table: str = Field(alias="USERS_TABLE")
    sessions_table: str = Field(alias="SESSIONS_TABLE")
    # Where clients open the live-updates WebSocket (GET /api/v1/info reports it); unset: not deployed.
    websocket_url: str | None = Field(None, alias="WEBSOCKET_URL", pattern=r"^wss?://[^/]+")
    upload_url_ttl_seconds: int = Field(900, alias="UPLOAD_URL_TTL_SECONDS", ge=60, le=7 * 24 * 3600)
    download_url_ttl_seconds: int = Field(300, alias="DOWNLOAD_URL_TTL_SECONDS", ge=30, le=7 * 24 * 3600)
    cache_table: str = Field(alias="CLASSIFICATION_CACHE_TABLE")
    stats_table: str = Field(alias="STATS_TABLE")


class AdminSettings(_EnvSettings):
    """What `photopipe admin ...` needs, run against a stack with that stack's environment."""

    users_table: str = Field(alias="USERS_TABLE")


class IngestSettings(CommonSettings):
    # The ingest queue's redrive maxReceiveCount: on the last attempt a failing image is marked `failed`.
    max_receive_count: int = Field(3, alias="INGEST_MAX_RECEIVE_COUNT", ge=1)
    classify_queue_url: str = Field(alias="CLASSIFY_QUEUE_URL")
    limits_table: str = Field(alias="LIMITS_TABLE")


class ClassifySettings(CommonSettings, ClassifierSettings):
    cache_table: str = Field(alias="CLASSIFICATION_CACHE_TABLE")
    stats_table: str = Field(alias="STATS_TABLE")
    max_receive_count: int = Field(3, alias="CLASSIFY_MAX_RECEIVE_COUNT", ge=1)
    # The most one record of a batch may take (template.yaml sizes the function's timeout from it).
    record_budget_seconds: float = Field(75.0, alias="CLASSIFY_RECORD_BUDGET_SECONDS", ge=15, le=900)
    near_duplicate_max_distance: int | None = Field(
        None, alias="PHOTOPIPE_NEAR_DUPLICATE_MAX_DISTANCE", ge=0, le=32
    )
    # Estimated price of the model (per 1,000 tokens) for the cost figures in /stats; DashScope bills in CNY.
    price_per_1k_input_tokens: float = Field(0.0015, alias="PHOTOPIPE_PRICE_PER_1K_INPUT_TOKENS", ge=0)
    price_per_1k_output_tokens: float = Field(0.0045, alias="PHOTOPIPE_PRICE_PER_1K_OUTPUT_TOKENS", ge=0)
    price_currency: str = Field("CNY", alias="PHOTOPIPE_PRICE_CURRENCY")


class ClassifyApiSettings(ClassifySettings, TokenSettings):
    """The classify test's function (`POST /api/v1/classify`): classification plus token checks. A photo
    sent in the request body is limited by Lambda's 6 MB request payload, which base64 makes ~4.5 MB."""

    max_request_image_bytes: int = Field(
        4_400_000, alias="PHOTOPIPE_CLASSIFY_MAX_BYTES", ge=1024, le=4_400_000
    )


class ExportsSettings(_EnvSettings):
    media_bucket: str = Field(alias="MEDIA_BUCKET")
    jobs_table: str = Field(alias="JOBS_TABLE")


class DeadLetterSettings(_EnvSettings):
    """The dead-letter recorder: the four DLQs it listens to, and each source queue's maxReceiveCount."""

    images_table: str = Field(alias="IMAGES_TABLE")
    jobs_table: str = Field(alias="JOBS_TABLE")
    credits_table: str = Field(alias="CREDITS_TABLE")  # a job that failed for good is refunded
    ingest_dlq_arn: str = Field(alias="INGEST_DEAD_LETTER_QUEUE_ARN")
    classify_dlq_arn: str = Field(alias="CLASSIFY_DEAD_LETTER_QUEUE_ARN")
    gpu_jobs_dlq_arn: str = Field(alias="GPU_JOBS_DEAD_LETTER_QUEUE_ARN")
    exports_dlq_arn: str = Field(alias="EXPORTS_DEAD_LETTER_QUEUE_ARN")
    ingest_max_receive_count: int = Field(3, alias="INGEST_MAX_RECEIVE_COUNT", ge=1)
    classify_max_receive_count: int = Field(3, alias="CLASSIFY_MAX_RECEIVE_COUNT", ge=1)
    gpu_jobs_max_receive_count: int = Field(3, alias="GPU_JOBS_MAX_RECEIVE_COUNT", ge=1)
    exports_max_receive_count: int = Field(3, alias="EXPORTS_MAX_RECEIVE_COUNT", ge=1)


class WorkerSettings(_EnvSettings):
    """The GPU worker process (infra/gpu-worker/main.py and the local stack's CPU worker)."""

    media_bucket: str = Field(alias="MEDIA_BUCKET")
    jobs_table: str = Field(alias="JOBS_TABLE")
    workers_table: str = Field(alias="WORKERS_TABLE")
    gpu_jobs_queue_url: str = Field(alias="GPU_JOBS_QUEUE_URL")
    credits_table: str = Field(alias="CREDITS_TABLE")  # a job that fails for good is refunded
    model_dir: str = Field(alias="PHOTOPIPE_MODEL_DIR")
    # Comma-separated ONNX Runtime providers, in order; unset: TensorRT, CUDA, CPU - whichever exist.
    providers: str | None = Field(None, alias="PHOTOPIPE_PROVIDERS")
    precision: Literal["auto", "fp32", "fp16"] = Field("auto", alias="PHOTOPIPE_PRECISION")
    max_batch: int = Field(8, alias="PHOTOPIPE_MAX_BATCH", ge=1, le=256)
    batch_wait_s: float = Field(0.5, alias="PHOTOPIPE_BATCH_WAIT_S", ge=0, le=30)
    poll_wait_s: int = Field(20, alias="PHOTOPIPE_POLL_WAIT_S", ge=0, le=20)
    visibility_s: int = Field(120, alias="PHOTOPIPE_VISIBILITY_S", ge=30, le=43_200)
    lease_s: float = Field(180, alias="PHOTOPIPE_LEASE_S", ge=30)
    max_receive_count: int = Field(3, alias="GPU_JOBS_MAX_RECEIVE_COUNT", ge=1)
    worker_id: str | None = Field(None, alias="PHOTOPIPE_WORKER_ID")
    # direct: write the workers table (IAM); http: POST {api_url}/webhook/register with the shared secret.
    fleet_mode: Literal["direct", "http"] = Field("direct", alias="PHOTOPIPE_FLEET_MODE")
    api_url: str | None = Field(None, alias="PHOTOPIPE_API_URL")
    fleet_secret: SecretStr | None = Field(None, alias="FLEET_SECRET")
    fleet_secret_id: str | None = Field(None, alias="FLEET_SECRET_ID")
    # GPU sessions run only these batch sizes (each chunk padded up to one; a CUDA graph and the TensorRT
    # profile cover them): comma-separated, the largest = PHOTOPIPE_MAX_BATCH; unset: powers of two up to it.
    batch_buckets: str | None = Field(None, alias="PHOTOPIPE_BATCH_BUCKETS")
    cuda_graphs: bool = Field(True, alias="PHOTOPIPE_CUDA_GRAPHS")
    # TensorRT engine and timing caches (a volume that outlives the task saves the engine build)
    trt_cache_dir: str | None = Field(None, alias="PHOTOPIPE_TRT_CACHE_DIR")
    # The GPU image sets PHOTOPIPE_REQUIRE_GPU=1: there the worker refuses to start on the CPU provider
    # unless PHOTOPIPE_ALLOW_CPU=1. The local stack's CPU worker sets neither.
    require_gpu: bool = Field(False, alias="PHOTOPIPE_REQUIRE_GPU")
    allow_cpu: bool = Field(False, alias="PHOTOPIPE_ALLOW_CPU")
    # threads for the CPU halves (download, decode, detect, align; paste, encode, upload) beside the restore
    cpu_threads: int | None = Field(None, alias="PHOTOPIPE_CPU_THREADS", ge=1, le=64)
    # a Real-ESRGAN model directory (manifest.json + ONNX, `photopipe models export --model realesrgan`):
    # the background upscaler at quality_level high; unset: Lanczos
    upscaler_model_dir: str | None = Field(None, alias="PHOTOPIPE_UPSCALER_MODEL_DIR")

    @field_validator("batch_buckets")
    @classmethod
    def _buckets(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        sizes = sorted({int(part) for part in value.split(",") if part.strip()})
        max_batch = info.data.get("max_batch")
        if not sizes or sizes[0] < 1 or (max_batch is not None and sizes[-1] != max_batch):
            raise ValueError(
                f"expected positive batch sizes, the largest equal to PHOTOPIPE_MAX_BATCH ({max_batch})"
            )
        return ",".join(map(str, sizes))

    @property
    def provider_list(self) -> list[str] | None:
        return [p.strip() for p in self.providers.split(",") if p.strip()] if self.providers else None

    @property
    def bucket_list(self) -> list[int] | None:
        return [int(b) for b in self.batch_buckets.split(",")] if self.batch_buckets else None
