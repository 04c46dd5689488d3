"""Routes of the HTTP API. Errors are mapped to `{"error": {"code", "message"}}` in one place below."""

from __future__ import annotations

import json
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFound
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Query

from photopipe import __version__
from photopipe.api.schemas import (
    BatchDeleteOut,
    BatchDeleteRequest,
    CachedClassificationOut,
    CacheStatsOut,
    CategoryStatsOut,
    CheckCacheOut,
    CheckCacheRequest,
    DayStats,
    HealthOut,
    ImageClassificationOut,
    ImageList,
    ImageOut,
    ImageUrls,
    InfoOut,
    LoginRequest,
    PresignedPostOut,
    ProfileOut,
    RegisterRequest,
    SessionOut,
    UploadOut,
    UploadRequest,
    UserOut,
)
from photopipe.auth.tokens import Claims
from photopipe.classification import CATEGORY_LABELS, Category
from photopipe.errors import PhotopipeError
from photopipe.models import ImageState
from photopipe.observability import logger
from photopipe.usecases.uploads import ACCEPTED_CONTENT_TYPES
from photopipe.wiring import api_services

PREFIX = "/api/v1"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]

app = APIGatewayHttpResolver(enable_validation=True)
app.configure_openapi(
    title="photopipe",
    version=__version__,
    description="Serverless photo pipeline: presigned uploads, ingest, thumbnails, classification.",
    security_schemes={"bearerAuth": HTTPBearer(bearerFormat="JWT")},
)


def _error(status: int, code: str, message: str) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps({"error": {"code": code, "message": message}}),
    )


@app.exception_handler(PhotopipeError)
def _domain_error(e: PhotopipeError) -> Response:
    if e.status >= 500:
        logger.exception("request failed", extra={"code": e.code})
    return _error(e.status, e.code, e.message)


@app.exception_handler(RequestValidationError)
def _invalid_request(e: RequestValidationError) -> Response:
    problems = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        problems.append(f"{loc or 'body'}: {err.get('msg')}")
    return _error(422, "invalid_request", "; ".join(problems) or "the request is not valid")


@app.not_found
def _no_route(_: RouteNotFound) -> Response:
    return _error(404, "no_such_route", f"no route {app.current_event.http_method} {app.current_event.path}")


def require_user(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    claims = api_services().accounts.authenticate(app.current_event.headers.get("authorization"))
    app.append_context(claims=claims)
    return next_middleware(app)


def _claims() -> Claims:
    claims: Claims = app.context["claims"]
    return claims


# ------------------------------------------------------------------ ops
@app.get(f"{PREFIX}/health", tags=["ops"])
def health() -> HealthOut:
    return HealthOut(status="ok", version=__version__)


@app.get(f"{PREFIX}/info", tags=["ops"])
def info() -> InfoOut:
    settings = api_services().settings
    return InfoOut(
        name="photopipe",
        version=__version__,
        stage=settings.stage,
        limits={
            "max_upload_bytes": settings.max_upload_bytes,
            "max_pixels": settings.max_pixels,
            "thumbnail_px": 256,
            "preview_px": 1440,
        },
        accepted_content_types=sorted(ACCEPTED_CONTENT_TYPES),
    )


@app.get(f"{PREFIX}/openapi.json", tags=["ops"], include_in_schema=False)
def openapi():  # no return annotation: a Response one breaks OpenAPI generation
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=app.get_openapi_json_schema()
    )


# ------------------------------------------------------------------ auth
@app.post(f"{PREFIX}/auth/register", status_code=201, tags=["auth"])
def register(body: RegisterRequest) -> SessionOut:
    session = api_services().accounts.register(
        username=body.username, email=body.email, password=body.password
    )
    return SessionOut(token=session.token, expires_in=session.expires_in, user=UserOut.of(session.user))


@app.post(f"{PREFIX}/auth/login", tags=["auth"])
def login(body: LoginRequest) -> SessionOut:
    session = api_services().accounts.login(login=body.login, password=body.password)
    return SessionOut(token=session.token, expires_in=session.expires_in, user=UserOut.of(session.user))


@app.get(f"{PREFIX}/profile", tags=["auth"], security=BEARER, middlewares=[require_user])
def profile() -> ProfileOut:
    return ProfileOut(user=UserOut.of(api_services().accounts.profile(_claims().user_id)))


# ------------------------------------------------------------------ uploads and images
@app.post(f"{PREFIX}/uploads", status_code=201, tags=["images"], security=BEARER, middlewares=[require_user])
def create_upload(body: UploadRequest) -> UploadOut:
    upload = api_services().uploads.create(
        user_id=_claims().user_id, filename=body.filename, content_type=body.content_type, size=body.size
    )
    return UploadOut(
        image_id=upload.image.image_id,
        key=upload.image.original_key,
        upload=PresignedPostOut(url=upload.post.url, fields=upload.post.fields),
        expires_in=upload.expires_in,
    )


@app.get(f"{PREFIX}/images", tags=["images"], security=BEARER, middlewares=[require_user])
def list_images(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
    state: Annotated[ImageState | None, Query()] = None,
) -> ImageList:
    gallery = api_services().gallery
    records, next_cursor = gallery.list_images(_claims().user_id, limit=limit, cursor=cursor, state=state)
    return ImageList(items=[ImageOut.of(r) for r in records], next_cursor=next_cursor)


@app.post(f"{PREFIX}/images/batch-delete", tags=["images"], security=BEARER, middlewares=[require_user])
def batch_delete(body: BatchDeleteRequest) -> BatchDeleteOut:
    deleted, missing = api_services().gallery.delete_many(_claims().user_id, body.image_ids)
    return BatchDeleteOut(deleted=deleted, not_found=missing)


@app.get(f"{PREFIX}/images/<image_id>", tags=["images"], security=BEARER, middlewares=[require_user])
def get_image(image_id: str) -> ImageOut:
    gallery = api_services().gallery
    record = gallery.get(_claims().user_id, image_id)
    links = gallery.links(record)
    return ImageOut.of(
        record, ImageUrls(original=links.original, thumbnail=links.thumbnail, preview=links.preview)
    )


@app.delete(f"{PREFIX}/images/<image_id>", tags=["images"], security=BEARER, middlewares=[require_user])
def delete_image(image_id: str):  # 204, no body (no annotation: see openapi)
    api_services().gallery.delete(_claims().user_id, image_id)
    return Response(status_code=204, content_type=None, body="")


@app.get(
    f"{PREFIX}/images/<image_id>/classification",
    tags=["classification"],
    security=BEARER,
    middlewares=[require_user],
)
def get_image_classification(image_id: str) -> ImageClassificationOut:
    record = api_services().gallery.get(_claims().user_id, image_id)
    return ImageClassificationOut(
        image_id=record.image_id,
        state=record.state,
        classification=record.classification,
        reason=record.reason,
        reason_message=record.reason_message,
    )


# ------------------------------------------------------------------ classification cache and statistics
@app.post(
    f"{PREFIX}/classify/check-cache", tags=["classification"], security=BEARER, middlewares=[require_user]
)
def check_cache(body: CheckCacheRequest) -> CheckCacheOut:
    """Is this photo's category known? A hit means the client need not upload it to learn it."""
    check = api_services().insights.check_cache(
        body.sha256.lower(), body.phash.lower() if body.phash else None
    )
    if not check.hit or check.result is None:
        return CheckCacheOut(hit=False)
    result = check.result
    zh, en = CATEGORY_LABELS[Category(result.category)]
    return CheckCacheOut(
        hit=True,
        source=check.source,
        distance=check.distance,
        classification=CachedClassificationOut(
            category=result.category,
            label_zh=zh,
            label_en=en,
            confidence=result.confidence,
            reason=result.reason,
            model=result.model,
            prompt_version=result.prompt_version,
        ),
    )


@app.get(f"{PREFIX}/stats/today", tags=["stats"], security=BEARER, middlewares=[require_user])
def stats_today() -> DayStats:
    return DayStats.model_validate(api_services().insights.today())


@app.get(f"{PREFIX}/stats/cache", tags=["stats"], security=BEARER, middlewares=[require_user])
def stats_cache(days: Annotated[int, Query(ge=1, le=90)] = 7) -> CacheStatsOut:
    return CacheStatsOut.model_validate(api_services().insights.cache_efficiency(days))


@app.get(f"{PREFIX}/stats/categories", tags=["stats"], security=BEARER, middlewares=[require_user])
def stats_categories(days: Annotated[int, Query(ge=1, le=90)] = 7) -> CategoryStatsOut:
    return CategoryStatsOut.model_validate(api_services().insights.categories(days))
