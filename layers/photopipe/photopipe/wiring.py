"""Builds each process's collaborators once (per Lambda execution environment) from its settings.
Handlers call these factories; tests clear them with `reset()` between moto fixtures."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Any

from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

from photopipe.adapters.aws import reset_session
from photopipe.adapters.classification_cache import ClassificationCache
from photopipe.adapters.connections import ConnectionsRepository
from photopipe.adapters.credits import CreditsRepository
from photopipe.adapters.dynamo import dynamodb_resource
from photopipe.adapters.fleet_deployment import FleetDeploymentParameter
from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.jobs import JobsRepository
from photopipe.adapters.limits import LimitsRepository
from photopipe.adapters.orders import OrdersRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.secrets import get_secret
from photopipe.adapters.sessions import SessionsRepository
from photopipe.adapters.sqs import Queue
from photopipe.adapters.stats import StatsRepository
from photopipe.adapters.users import UsersRepository
from photopipe.adapters.websocket import ConnectionsApi
from photopipe.adapters.wechatpay import WechatPayClient, WechatPayKeys, parse_keys
from photopipe.adapters.workers import WorkersRepository
from photopipe.auth.passwords import PasswordHasher
from photopipe.auth.tokens import TokenService
from photopipe.classification import (
    PROMPT_VERSION,
    DashScopeProvider,
    OpenAICompatibleProvider,
    VisionClassifier,
    VisionProvider,
)
from photopipe.classification.neardup import MAX_DISTANCE
from photopipe.errors import ConfigurationError
from photopipe.imaging import Limits
from photopipe.models import CreditPackage, LoginLimits, Quotas, User, parse_packages
from photopipe.settings import (
    AdminSettings,
    ApiSettings,
    ClassifierSettings,
    ClassifyApiSettings,
    ClassifySettings,
    ConnectionsSettings,
    DeadLetterSettings,
    ExportsSettings,
    IngestSettings,
    LimitSettings,
    NotifySettings,
    PaymentSettings,
    TokenSettings,
    WorkerSettings,
)
from photopipe.usecases.accounts import Accounts, grant_admin
from photopipe.usecases.classify import ImageClassifier, Prices
from photopipe.usecases.credits import Credits
from photopipe.usecases.dead_letters import DeadLetterQueue, DeadLetters, Source
from photopipe.usecases.enhance_jobs import EnhanceJobs
from photopipe.usecases.exports import Exporter
from photopipe.usecases.fleet import Fleet
from photopipe.usecases.gallery import Gallery
from photopipe.usecases.ingest import Ingestor, idempotency_config
from photopipe.usecases.insights import Insights
from photopipe.usecases.live import Connections, LiveUpdates, WebSocketAuthorizer
from photopipe.usecases.payments import Payments
from photopipe.usecases.quotas import QuotaGuard
from photopipe.usecases.uploads import Uploads

NO_CLASSIFIER = (
    "no vision model is configured, so this photo was not categorised. Set DASHSCOPE_API_KEY (or, in AWS, "
    "the DashScopeApiKeySecretName parameter), or PHOTOPIPE_CLASSIFIER=openai with PHOTOPIPE_OPENAI_BASE_URL"
)


@dataclass(frozen=True)
class ApiServices:
    settings: ApiSettings
    users: UsersRepository
    images: ImagesRepository
    media: MediaStore
    hasher: PasswordHasher
    sessions: SessionsRepository
    limits: LimitsRepository

    @property
    def quotas(self) -> QuotaGuard:
        return QuotaGuard(limits=self.limits, quotas=quotas_of(self.settings))

    @property
    def accounts(self) -> Accounts:
        return Accounts(
            users=self.users,
            hasher=self.hasher,
            tokens=token_service(self.settings),
            sessions=self.sessions,
            limits=self.limits,
            login_limits=LoginLimits(
                window_seconds=self.settings.login_window_seconds,
                per_account=self.settings.login_max_per_account,
                per_source=self.settings.login_max_per_source,
            ),
        )

    @property
    def uploads(self) -> Uploads:
        return Uploads(
            images=self.images,
            media=self.media,
            max_upload_bytes=self.settings.max_upload_bytes,
            url_ttl_seconds=self.settings.upload_url_ttl_seconds,
            quotas=self.quotas,
        )

    @cached_property  # it holds two DynamoDB resources: one per process, not one per request
    def insights(self) -> Insights:
        return Insights(
            cache=ClassificationCache(
                self.settings.cache_table, model=self.settings.model, prompt_version=PROMPT_VERSION
            ),
            stats=StatsRepository(self.settings.stats_table),
            max_distance=MAX_DISTANCE,
            currency="CNY",
        )

    @property
    def gallery(self) -> Gallery:
        return Gallery(
            images=self.images,
            media=self.media,
            url_ttl_seconds=self.settings.download_url_ttl_seconds,
            quotas=self.quotas,
        )

    # Built once per execution environment (each holds boto3 clients), on first use.
    @cached_property
    def fleet(self) -> Fleet:
        secret_id = self.settings.fleet_secret_id
        parameter = self.settings.gpu_fleet_parameter
        return Fleet(
            workers=WorkersRepository(self.settings.workers_table),
            secret=lambda: get_secret(secret_id, setting="FLEET_SECRET_ID"),
            deployment=FleetDeploymentParameter(parameter) if parameter else None,
        )

    @cached_property
    def enhance_jobs(self) -> EnhanceJobs:
        return EnhanceJobs(
            images=self.images,
            jobs=JobsRepository(self.settings.jobs_table),
            media=self.media,
            gpu_queue=Queue(self.settings.gpu_jobs_queue_url),
            exports_queue=Queue(self.settings.exports_queue_url),
            fleet=self.fleet,
            queue_when_no_workers=self.settings.enhance_queue_when_no_workers,
            url_ttl_seconds=self.settings.download_url_ttl_seconds,
            credits=self.credits,
            quotas=self.quotas,
        )

    @cached_property
    def credits(self) -> Credits:
        return Credits(
            credits=CreditsRepository(self.settings.credits_table),
            jobs=JobsRepository(self.settings.jobs_table),
            free_credits=self.settings.free_credits,
        )

    @cached_property
    def payments(self) -> Payments:
        return payments(self.settings, credits=self.credits, users=self.users)


def token_service(settings: TokenSettings) -> TokenService:
    """The access tokens' rules, for the API and the WebSocket authorizer alike. The key is re-read through
    Powertools' 5-minute cache, so a rotated secret takes effect."""
    return TokenService(
        secret=get_secret(settings.jwt_secret_id, setting="JWT_SECRET_ID"),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        ttl_seconds=settings.jwt_ttl_seconds,
    )


@lru_cache(maxsize=1)
def api_services() -> ApiServices:
    settings = ApiSettings.from_env()
    dynamodb = dynamodb_resource()  # one for the repositories built here
    return ApiServices(
        settings=settings,
        users=UsersRepository(settings.users_table, dynamodb),
        images=ImagesRepository(settings.images_table, dynamodb),
        media=MediaStore(settings.media_bucket),
        hasher=PasswordHasher(),
        sessions=SessionsRepository(settings.sessions_table, dynamodb),
        limits=LimitsRepository(settings.limits_table, dynamodb),
    )


def quotas_of(settings: LimitSettings) -> Quotas:
    return Quotas(
        uploads_per_day=settings.quota_uploads_per_day,
        stored_bytes=settings.quota_stored_bytes,
        active_jobs=settings.quota_active_jobs,
    )


def credit_packages(settings: PaymentSettings) -> tuple[CreditPackage, ...]:
    try:
        return parse_packages(settings.credit_packages)
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise ConfigurationError(
            f"PHOTOPIPE_CREDIT_PACKAGES (the CreditPackages parameter) is not a valid price list: {e}",
            code="missing_setting",
        ) from e


def wechat_pay(settings: PaymentSettings) -> WechatPayClient | None:
    """The WeChat Pay client, or None while the merchant id and app id are not configured. Its keys are
    read through the secrets cache at each use (a rotated key takes effect within minutes)."""
    if not (settings.payments_enabled and settings.wechat_pay_mchid and settings.wechat_appid):
        return None
    secret_id = settings.wechat_pay_secret_id

    def keys() -> WechatPayKeys:
        return parse_keys(get_secret(secret_id, setting="WECHAT_PAY_SECRET_ID", min_length=2))

    return WechatPayClient(
        mchid=settings.wechat_pay_mchid,
        appid=settings.wechat_appid,
        keys=keys,
        base_url=settings.wechat_pay_base_url,
        api_base_url=settings.wechat_api_base_url,
    )


def payments(settings: PaymentSettings, *, credits: Credits, users: UsersRepository | None) -> Payments:
    return Payments(
        orders=OrdersRepository(settings.orders_table),
        ledger=credits.credits,
        credits=credits,
        users=users,
        checks=Queue(settings.order_checks_queue_url),
        packages=credit_packages(settings),
        wechat=wechat_pay(settings),
        trade_prefix=f"PP{settings.stage[:1].upper()}",  # PPD..., PPP...: dev and prod never collide
        order_ttl_seconds=settings.order_ttl_seconds,
        query_after_seconds=settings.order_query_after_seconds,
    )


@lru_cache(maxsize=1)
def order_checks() -> Payments:
    """The order-checks function's use case (no users table: it never links accounts)."""
    settings = PaymentSettings.from_env()
    credits = Credits(
        credits=CreditsRepository(settings.credits_table), jobs=None, free_credits=settings.free_credits
    )
    return payments(settings, credits=credits, users=None)


@lru_cache(maxsize=1)
def ingestor() -> Ingestor:
    settings = IngestSettings.from_env()
    return Ingestor(
        images=ImagesRepository(settings.images_table),
        media=MediaStore(settings.media_bucket),
        classify_queue=Queue(settings.classify_queue_url),
        limits=Limits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels),
        max_receive_count=settings.max_receive_count,
        persistence=DynamoDBPersistenceLayer(table_name=settings.idempotency_table),
        idempotency=idempotency_config(),
        quotas=QuotaGuard(limits=LimitsRepository(settings.limits_table), quotas=Quotas()),
    )


def vision_provider(settings: ClassifierSettings) -> VisionProvider | None:
    """The configured vision LLM (its key from the environment, or from Secrets Manager in AWS)."""
    provider = settings.provider
    if provider == "dashscope":
        if settings.dashscope_api_key is not None:
            key = settings.dashscope_api_key.get_secret_value()
        elif settings.dashscope_api_key_secret_id:
            key = get_secret(
                settings.dashscope_api_key_secret_id, setting="DASHSCOPE_API_KEY_SECRET_ID", min_length=8
            )
        else:
            raise ConfigurationError(
                "PHOTOPIPE_CLASSIFIER=dashscope needs DASHSCOPE_API_KEY (or DASHSCOPE_API_KEY_SECRET_ID)",
                code="missing_setting",
            )
        return DashScopeProvider(key, settings.dashscope_model)
    if provider == "openai":
        if not settings.openai_base_url:
            raise ConfigurationError(
                "PHOTOPIPE_CLASSIFIER=openai needs PHOTOPIPE_OPENAI_BASE_URL (e.g. http://127.0.0.1:11434/v1)",
                code="missing_setting",
            )
        if settings.openai_api_key is not None:
            key = settings.openai_api_key.get_secret_value()
        elif settings.openai_api_key_secret_id:
            key = get_secret(
                settings.openai_api_key_secret_id, setting="PHOTOPIPE_OPENAI_API_KEY_SECRET_ID", min_length=1
            )
        else:
            key = "none"  # local servers (vLLM, Ollama) accept any key
        return OpenAICompatibleProvider(key, settings.openai_base_url, settings.openai_model)
    return None


@lru_cache(maxsize=1)
def image_classifier() -> ImageClassifier:
    return _image_classifier(ClassifySettings.from_env())


def _image_classifier(settings: ClassifySettings) -> ImageClassifier:
    provider = vision_provider(settings)
    return ImageClassifier(
        images=ImagesRepository(settings.images_table),
        media=MediaStore(settings.media_bucket),
        cache=ClassificationCache(settings.cache_table, model=settings.model, prompt_version=PROMPT_VERSION),
        stats=StatsRepository(settings.stats_table),
        vision=VisionClassifier(provider) if provider else None,
        prices=Prices(
            per_1k_input=settings.price_per_1k_input_tokens,
            per_1k_output=settings.price_per_1k_output_tokens,
            currency=settings.price_currency,
        ),
        max_distance=settings.near_duplicate_max_distance
        if settings.near_duplicate_max_distance is not None
        else MAX_DISTANCE,
        max_receive_count=settings.max_receive_count,
        skipped_reason=NO_CLASSIFIER,
        record_budget_s=settings.record_budget_seconds,
        limits=Limits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels),
    )


@dataclass(frozen=True)
class ClassifyApi:
    """The classify test's function: token checks and the classifier."""

    settings: ClassifyApiSettings
    classifier: ImageClassifier

    @property
    def tokens(self) -> TokenService:
        return token_service(self.settings)


@lru_cache(maxsize=1)
def classify_api() -> ClassifyApi:
    settings = ClassifyApiSettings.from_env()
    return ClassifyApi(settings=settings, classifier=_image_classifier(settings))


@lru_cache(maxsize=1)
def exporter() -> Exporter:
    settings = ExportsSettings.from_env()
    return Exporter(jobs=JobsRepository(settings.jobs_table), media=MediaStore(settings.media_bucket))


@lru_cache(maxsize=1)
def dead_letters() -> DeadLetters:
    settings = DeadLetterSettings.from_env()
    jobs = JobsRepository(settings.jobs_table)
    return DeadLetters(
        images=ImagesRepository(settings.images_table),
        jobs=jobs,
        refunds=Credits(credits=CreditsRepository(settings.credits_table), jobs=jobs, free_credits=0),
        queues={
            settings.ingest_dlq_arn: DeadLetterQueue(Source.INGEST, settings.ingest_max_receive_count),
            settings.classify_dlq_arn: DeadLetterQueue(Source.CLASSIFY, settings.classify_max_receive_count),
            settings.gpu_jobs_dlq_arn: DeadLetterQueue(Source.GPU_JOBS, settings.gpu_jobs_max_receive_count),
            settings.exports_dlq_arn: DeadLetterQueue(Source.EXPORTS, settings.exports_max_receive_count),
        },
    )


def worker_fleet_link(
    settings: WorkerSettings, worker_id: str, *, provider: str | None, max_batch: int
) -> Any:
    """How a GPU worker registers: directly in the workers table (default) or through the API's webhook."""
    from photopipe import __version__
    from photopipe.adapters.fleet_http import HttpFleetLink
    from photopipe.usecases.enhance_worker import DirectFleetLink

    if settings.fleet_mode == "http":
        if not settings.api_url:
            raise ConfigurationError(
                "PHOTOPIPE_FLEET_MODE=http needs PHOTOPIPE_API_URL", code="missing_setting"
            )
        if settings.fleet_secret is not None:
            secret = settings.fleet_secret.get_secret_value()
        elif settings.fleet_secret_id:
            secret = get_secret(settings.fleet_secret_id, setting="FLEET_SECRET_ID")
        else:
            raise ConfigurationError(
                "PHOTOPIPE_FLEET_MODE=http needs FLEET_SECRET (or FLEET_SECRET_ID)", code="missing_setting"
            )
        return HttpFleetLink(
            api_url=settings.api_url,
            secret=secret,
            worker_id=worker_id,
            provider=provider,
            max_batch=max_batch,
            version=__version__,
        )
    fleet = Fleet(
        workers=WorkersRepository(settings.workers_table),
        secret=lambda: "",  # direct registration is authorised by IAM, not by the shared secret
    )
    return DirectFleetLink(fleet, worker_id, provider=provider, max_batch=max_batch, version=__version__)


def background_upscaler(settings: WorkerSettings) -> Any:
    """Real-ESRGAN in tiles when `PHOTOPIPE_UPSCALER_MODEL_DIR` names an exported model (its sha256 checked
    against its manifest), else Lanczos."""
    from photopipe.enhance.upscale import LanczosUpscaler, TiledOnnxUpscaler

    if not settings.upscaler_model_dir:
        return LanczosUpscaler()
    from pathlib import Path

    from photopipe.enhance.providers import CPU, CUDA

    return TiledOnnxUpscaler.from_model_dir(
        Path(settings.upscaler_model_dir),
        providers=settings.provider_list or [CUDA, CPU],
        precision=settings.precision,
    )


def gpu_worker(settings: WorkerSettings, *, restorer: Any | None = None, enhancer: Any | None = None) -> Any:
    """A GPU worker with its one face-restorer session (created and warmed up here, at start)."""
    import os

    from photopipe.enhance.pipeline import PipelineEnhancer
    from photopipe.usecases.enhance_worker import GpuWorker, WorkerConfig, default_worker_id

    if restorer is None:
        from pathlib import Path

        from photopipe.enhance.session import GfpganSession

        restorer = GfpganSession(
            Path(settings.model_dir),
            providers=settings.provider_list,
            precision=settings.precision,
            max_batch=settings.max_batch,
            buckets=settings.bucket_list,
            cuda_graphs=settings.cuda_graphs,
            trt_cache_dir=Path(settings.trt_cache_dir) if settings.trt_cache_dir else None,
            require_gpu=settings.require_gpu,
            allow_cpu=settings.allow_cpu,
        )
    worker_id = settings.worker_id or default_worker_id()
    provider = getattr(restorer, "provider", None)
    config = WorkerConfig(
        worker_id=worker_id,
        max_receive_count=settings.max_receive_count,
        poll_wait_s=settings.poll_wait_s,
        batch_wait_s=settings.batch_wait_s,
        visibility_s=settings.visibility_s,
        lease_s=settings.lease_s,
        cpu_threads=settings.cpu_threads or max(2, min(8, os.cpu_count() or 2)),
        # on the CPU provider the restore already uses every core: overlapping the CPU halves only contends
        overlap=provider != "CPUExecutionProvider",
    )
    jobs = JobsRepository(settings.jobs_table)
    return GpuWorker(
        jobs=jobs,
        media=MediaStore(settings.media_bucket),
        queue=Queue(settings.gpu_jobs_queue_url),
        restorer=restorer,
        enhancer=enhancer
        if enhancer is not None
        else PipelineEnhancer(upscaler=background_upscaler(settings)),
        config=config,
        fleet=worker_fleet_link(
            settings,
            worker_id,
            provider=str(provider) if provider else None,
            max_batch=int(restorer.max_batch),
        ),
        # The worker only refunds (a job that failed for good); it never opens accounts.
        refunds=Credits(credits=CreditsRepository(settings.credits_table), jobs=jobs, free_credits=0),
    )


@lru_cache(maxsize=1)
def websocket_authorizer() -> WebSocketAuthorizer:
    settings = TokenSettings.from_env()
    return WebSocketAuthorizer(tokens=lambda: token_service(settings))


@lru_cache(maxsize=1)
def websocket_connections() -> Connections:
    settings = ConnectionsSettings.from_env()
    return Connections(
        connections=ConnectionsRepository(settings.connections_table),
        ttl_seconds=settings.connection_ttl_seconds,
    )


@lru_cache(maxsize=1)
def live_updates() -> LiveUpdates:
    settings = NotifySettings.from_env()
    return LiveUpdates(
        connections=ConnectionsRepository(settings.connections_table),
        api=ConnectionsApi(settings.websocket_url),
    )


def set_admin(username: str, admin: bool = True, env: Mapping[str, str] | None = None) -> User:
    """Grant (or revoke) the admin flag: what `photopipe admin grant USERNAME` runs, with the stack's
    environment (`env`, else this process's)."""
    return grant_admin(UsersRepository(AdminSettings.from_env(env).users_table), username, admin=admin)


def reset() -> None:
    """Forget every built collaborator and the boto3 session (tests, after switching moto fixtures)."""
    reset_session()
    api_services.cache_clear()
    websocket_authorizer.cache_clear()
    websocket_connections.cache_clear()
    live_updates.cache_clear()
    ingestor.cache_clear()
    image_classifier.cache_clear()
    classify_api.cache_clear()
    exporter.cache_clear()
    order_checks.cache_clear()
    dead_letters.cache_clear()
