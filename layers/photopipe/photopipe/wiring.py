"""Builds each process's collaborators once (per Lambda execution environment) from its settings.
Handlers call these factories; tests clear them with `reset()` between moto fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.secrets import get_secret
from photopipe.adapters.users import UsersRepository
from photopipe.auth.passwords import PasswordHasher
from photopipe.auth.tokens import TokenService
from photopipe.imaging import Limits
from photopipe.settings import ApiSettings, IngestSettings
from photopipe.usecases.accounts import Accounts
from photopipe.usecases.gallery import Gallery
from photopipe.usecases.ingest import Ingestor
from photopipe.usecases.uploads import Uploads


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
    )


def reset() -> None:
    """Forget every built collaborator (tests, after switching moto fixtures)."""
    api_services.cache_clear()
    ingestor.cache_clear()
