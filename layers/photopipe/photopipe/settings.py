"""Process settings: one validated pydantic model per process, read from the environment once (by the
handler's factory, never at import time), failing fast with the name of the variable at fault.

Domain code receives values (`bucket: str`), never reads `os.environ` itself."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class ApiSettings(CommonSettings):
    users_table: str = Field(alias="USERS_TABLE")
    jwt_secret_id: str = Field(alias="JWT_SECRET_ID")
    jwt_ttl_seconds: int = Field(3600, alias="JWT_TTL_SECONDS", ge=60)
    jwt_issuer: str = Field("photopipe", alias="JWT_ISSUER")
    jwt_audience: str = Field("photopipe-api", alias="JWT_AUDIENCE")
    upload_url_ttl_seconds: int = Field(900, alias="UPLOAD_URL_TTL_SECONDS", ge=60, le=7 * 24 * 3600)
    download_url_ttl_seconds: int = Field(300, alias="DOWNLOAD_URL_TTL_SECONDS", ge=30, le=7 * 24 * 3600)


class IngestSettings(CommonSettings):
    # The ingest queue's redrive maxReceiveCount: on the last attempt a failing image is marked `failed`.
    max_receive_count: int = Field(3, alias="INGEST_MAX_RECEIVE_COUNT", ge=1)
