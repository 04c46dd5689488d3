"""Builds each process's collaborators once (per Lambda execution environment) from its settings.
Handlers call these factories; tests clear them with `reset()` between moto fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from photopipe.adapters.classification_cache import ClassificationCache
from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.secrets import get_secret
from photopipe.adapters.stats import StatsRepository
from photopipe.adapters.users import UsersRepository
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
from photopipe.settings import ApiSettings, ClassifierSettings, ClassifySettings, IngestSettings
from photopipe.usecases.accounts import Accounts
from photopipe.usecases.classify import ImageClassifier, Prices
from photopipe.usecases.gallery import Gallery
from photopipe.usecases.ingest import Ingestor
from photopipe.usecases.insights import Insights
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

    @property
    def accounts(self) -> Accounts:
        # The key is re-read through Powertools' 5-minute cache, so a rotated secret takes effect.
        secret = get_secret(self.settings.jwt_secret_id, setting="JWT_SECRET_ID")
        tokens = TokenService(
            secret=secret,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            ttl_seconds=self.settings.jwt_ttl_seconds,
        )
        return Accounts(users=self.users, hasher=self.hasher, tokens=tokens)

    @property
    def uploads(self) -> Uploads:
        return Uploads(
            images=self.images,
            media=self.media,
            max_upload_bytes=self.settings.max_upload_bytes,
            url_ttl_seconds=self.settings.upload_url_ttl_seconds,
        )

    @property
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
            images=self.images, media=self.media, url_ttl_seconds=self.settings.download_url_ttl_seconds
        )


@lru_cache(maxsize=1)
def api_services() -> ApiServices:
    settings = ApiSettings.from_env()
    return ApiServices(
        settings=settings,
        users=UsersRepository(settings.users_table),
        images=ImagesRepository(settings.images_table),
        media=MediaStore(settings.media_bucket),
        hasher=PasswordHasher(),
    )


@lru_cache(maxsize=1)
def ingestor() -> Ingestor:
    settings = IngestSettings.from_env()
    return Ingestor(
        images=ImagesRepository(settings.images_table),
        media=MediaStore(settings.media_bucket),
        limits=Limits(max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels),
        max_receive_count=settings.max_receive_count,
        idempotency_table=settings.idempotency_table,
        classify_queue_url=settings.classify_queue_url,
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
    settings = ClassifySettings.from_env()
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
    )


def reset() -> None:
    """Forget every built collaborator (tests, after switching moto fixtures)."""
    api_services.cache_clear()
    ingestor.cache_clear()
    image_classifier.cache_clear()
