"""Process settings: one validated pydantic model per process, read from the environment once (by the
handler's factory, never at import time), failing fast with the name of the variable at fault.

Domain code receives values (`bucket: str`), never reads `os.environ` itself."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

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


class ApiSettings(CommonSettings, ClassifierSettings):
    users_table: str = Field(alias="USERS_TABLE")
    jwt_secret_id: str = Field(alias="JWT_SECRET_ID")
    jwt_ttl_seconds: int = Field(3600, alias="JWT_TTL_SECONDS", ge=60)
    jwt_issuer: str = Field("photopipe", alias="JWT_ISSUER")
    jwt_audience: str = Field("photopipe-api", alias="JWT_AUDIENCE")
    upload_url_ttl_seconds: int = Field(900, alias="UPLOAD_URL_TTL_SECONDS", ge=60, le=7 * 24 * 3600)
    download_url_ttl_seconds: int = Field(300, alias="DOWNLOAD_URL_TTL_SECONDS", ge=30, le=7 * 24 * 3600)
    cache_table: str = Field(alias="CLASSIFICATION_CACHE_TABLE")
    stats_table: str = Field(alias="STATS_TABLE")


class IngestSettings(CommonSettings):
    # The ingest queue's redrive maxReceiveCount: on the last attempt a failing image is marked `failed`.
    max_receive_count: int = Field(3, alias="INGEST_MAX_RECEIVE_COUNT", ge=1)
    classify_queue_url: str = Field(alias="CLASSIFY_QUEUE_URL")


class ClassifySettings(CommonSettings, ClassifierSettings):
    cache_table: str = Field(alias="CLASSIFICATION_CACHE_TABLE")
    stats_table: str = Field(alias="STATS_TABLE")
    max_receive_count: int = Field(3, alias="CLASSIFY_MAX_RECEIVE_COUNT", ge=1)
    near_duplicate_max_distance: int | None = Field(
        None, alias="PHOTOPIPE_NEAR_DUPLICATE_MAX_DISTANCE", ge=0, le=32
    )
    # Estimated price of the model (per 1,000 tokens) for the cost figures in /stats; DashScope bills in CNY.
    price_per_1k_input_tokens: float = Field(0.0015, alias="PHOTOPIPE_PRICE_PER_1K_INPUT_TOKENS", ge=0)
    price_per_1k_output_tokens: float = Field(0.0045, alias="PHOTOPIPE_PRICE_PER_1K_OUTPUT_TOKENS", ge=0)
    price_currency: str = Field("CNY", alias="PHOTOPIPE_PRICE_CURRENCY")
