"""Routes of the HTTP API. Errors are mapped to `{"error": {"code", "message"}}` in one place below, and
every route declares each status it can answer (`responses=answers(...)`, from `photopipe.api.contract`).

Logging: an expected refusal (4xx; a 503 a caller can act on) is one INFO/WARNING line without a stack
trace; anything else is an ERROR with one."""

from __future__ import annotations

import base64
import binascii
import json
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFound
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from photopipe import __version__
from photopipe.api import docs
from photopipe.api.contract import (
    LOCATION,
    MethodIndex,
    answers,
    error_response,
    json_of,
    no_content,
    strict_json,
)
from photopipe.api.schemas import (
    ID_PATTERN,
    BatchAcceptedOut,
    BatchDeleteFailureOut,
    BatchDeleteOut,
    BatchDeleteRequest,
    BatchOut,
    CachedClassificationOut,
    CacheStatsOut,
    CategoryStatsOut,
    CheckCacheOut,
    CheckCacheRequest,
    CreateOrderRequest,
    CreditEntryOut,
    CreditsOut,
    DayStats,
    EnhanceBatchRequest,
    EnhanceRequest,
    ExportPendingOut,
    FleetHealthOut,
    HealthOut,
    ImageClassificationOut,
    ImageList,
    ImageOut,
    ImageUrls,
    InfoOut,
    JobAcceptedOut,
    JobOut,
    LoginRequest,
    OrderOut,
    PackageOut,
    PackagesOut,
    PaymentStatsOut,
    PresignedPostOut,
    ProfileOut,
    PromptCategoryOut,
    PromptOut,
    QuotasOut,
    RefreshRequest,
    RegisterRequest,
    RegisterWorkerOut,
    RegisterWorkerRequest,
    ServersOut,
    SessionOut,
    UnregisterWorkerOut,
    UnregisterWorkerRequest,
    UploadOut,
    UploadRequest,
    UsageOut,
    UserOut,
    WechatLinkOut,
    WechatLoginRequest,
    WechatNotifyAnswerOut,
    WorkerOut,
)
from photopipe.auth.tokens import Claims
from photopipe.classification import PROMPT_VERSION, build_prompt
from photopipe.classification.prompt import CATEGORY_DESCRIPTIONS
from photopipe.errors import BadRequestError, PhotopipeError, error_body
from photopipe.models import CATEGORY_LABELS, Category, ImageState
from photopipe.observability import logger
from photopipe.usecases.accounts import Session
from photopipe.usecases.enhance_jobs import ExportReady
from photopipe.usecases.payments import OrderView
from photopipe.usecases.uploads import ACCEPTED_CONTENT_TYPES
from photopipe.wiring import api_services

PREFIX = "/api/v1"
BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]
FLEET: list[dict[str, list[str]]] = [{"fleetSecret": []}]
# An id in a path: what the API issues, so anything else is a 422 before any table is read.
PathId = Annotated[str, Path(pattern=ID_PATTERN, max_length=64)]

app = APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=strict_json)
app.configure_openapi(
    title="photopipe",
    version=__version__,
    description="Serverless photo pipeline: presigned uploads, ingest, thumbnails, classification.",
    security_schemes={
        "bearerAuth": HTTPBearer(bearerFormat="JWT"),
        "fleetSecret": APIKey(name="X-Fleet-Secret", **{"in": APIKeyIn.header}),
    },
)


def _error(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=json.dumps(body),
        headers=headers or {},
    )


def _refused(status: int, code: str, detail: str) -> None:
    """An expected refusal: one line, no stack trace (WARNING for limits and unavailability)."""
    log = logger.warning if status in (429, 503) else logger.info
    log("request refused", extra={"status": status, "code": code, "detail": detail})


@app.exception_handler(PhotopipeError)
def _domain_error(e: PhotopipeError) -> Response:
    if e.is_expected:
        _refused(e.status, e.code, e.message)
    else:
        logger.exception("request failed", extra={"status": e.status, "code": e.code})
    return _error(e.status, e.to_body(), e.headers())


@app.exception_handler(RequestValidationError)
def _invalid_request(e: RequestValidationError) -> Response:
    errors = list(e.errors())
    if any(err.get("type") == "json_invalid" for err in errors):
        detail = "; ".join(str(err.get("ctx", {}).get("error", "")) for err in errors) or "JSON decode error"
        return _invalid_json(f"the body is not valid JSON ({detail}); send one JSON object")
    problems = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
        problems.append(f"{loc or 'body'}: {err.get('msg')}")
    message = "; ".join(problems) or "the request is not valid"
    _refused(422, "invalid_request", message)
    return _error(422, error_body("invalid_request", message))


@app.exception_handler(UnicodeDecodeError)
def _not_utf8(e: UnicodeDecodeError) -> Response:
    """Powertools decodes the body before any route runs; a body that is not UTF-8 fails there."""
    try:
        _ = app.current_event.decoded_body
    except UnicodeDecodeError:
        return _invalid_json("the body is not UTF-8 text; send one JSON object, UTF-8 encoded")
    return _unexpected(e)  # raised by something else: a bug


def _invalid_json(message: str) -> Response:
    _refused(400, "invalid_json", message)
    return _error(400, error_body("invalid_json", message))


def _not_json() -> bool:
    media_type = app.current_event.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type not in ("", "application/json")


@app.exception_handler(RequestUnsupportedContentType)
def _unsupported_content_type(e: RequestUnsupportedContentType | ValueError) -> Response:
    content_type = app.current_event.headers.get("content-type", "")
    message = f"the body is {content_type!r}; send JSON with Content-Type: application/json"
    _refused(415, "unsupported_media_type", message)
    return _error(415, error_body("unsupported_media_type", message))


@app.exception_handler(ValueError)
def _bad_value(e: ValueError) -> Response:
    """Powertools parses form and multipart bodies too, and raises a bare ValueError for a multipart body
    without a boundary: every body here is JSON, so that is a 415. Any other ValueError is a bug."""
    return _unsupported_content_type(e) if _not_json() else _unexpected(e)


@app.exception_handler(Exception)
def _unexpected(e: Exception) -> Response:
    """A bug or an unforeseen failure: logged with its stack trace, answered without one."""
    logger.exception("request failed unexpectedly", extra={"error_type": type(e).__name__})
    request_id = app.current_event.request_context.request_id
    return _error(
        500,
        error_body(
            "internal_error",
            f"something went wrong on our side; it has been logged (request id {request_id}). Try again.",
        ),
    )


@cache
def _methods() -> MethodIndex:
    schema = json.loads(app.get_openapi_json_schema())
    return MethodIndex({path: list(ops) for path, ops in schema["paths"].items()})


@app.not_found
def _no_route(_: RouteNotFound) -> Response:
    method, path = app.current_event.http_method.upper(), app.current_event.path
    allowed = _methods().allowed(path)
    if allowed and method not in allowed:
        # The path exists with other methods: 405 with `Allow`, as API Gateway and RFC 9110 answer.
        message = f"{method} is not allowed on {path}; it answers {', '.join(sorted(allowed))}"
        _refused(405, "method_not_allowed", message)
        return _error(405, error_body("method_not_allowed", message), {"Allow": ", ".join(sorted(allowed))})
    _refused(404, "no_such_route", f"{method} {path}")
    return _error(404, error_body("no_such_route", f"no route {method} {path}"))


def require_user(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    claims = api_services().accounts.authenticate(app.current_event.headers.get("authorization"))
    app.append_context(claims=claims)
    return next_middleware(app)


def require_admin(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    """After `require_user`: 403 `admin_only` unless the caller's record has the admin flag."""
    api_services().accounts.require_admin(app.context["claims"].user_id)
    return next_middleware(app)


def _claims() -> Claims:
    claims: Claims = app.context["claims"]
    return claims


# ------------------------------------------------------------------ ops
@app.get(f"{PREFIX}/health", tags=["ops"], responses=answers(200, auth=False))
def health() -> HealthOut:
    fleet = api_services().fleet.health()
    return HealthOut(
        status="ok",
        version=__version__,
        fleet=FleetHealthOut(healthy=fleet.healthy, unhealthy=fleet.unhealthy),
    )


@app.get(f"{PREFIX}/info", tags=["ops"], responses=answers(200, auth=False))
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
        websocket_url=settings.websocket_url,
        docs_url=f"{PREFIX}/docs",
    )


@app.get(
    f"{PREFIX}/openapi.json",
    tags=["ops"],
    summary="This OpenAPI document",
    responses=answers(
        {
            200: {
                "description": "OpenAPI 3.1",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
        auth=False,
    ),
)
def openapi():  # no return annotation: a Response one breaks OpenAPI generation
    # The whole HTTP API: these routes plus POST /classify, which its own function serves (it writes the
    # classification cache and the counters, which this function may only read).
    from photopipe.api.classify_app import merged_openapi

    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=merged_openapi(app))


@app.get(
    f"{PREFIX}/docs",
    tags=["ops"],
    summary="Swagger UI for this API",
    responses=answers({200: {"description": "HTML", "content": {"text/html": {}}}}, auth=False),
)
def swagger_ui():  # HTML (no annotation: see openapi)
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=docs.PAGE,
        headers={"Content-Security-Policy": docs.CSP, "X-Content-Type-Options": "nosniff"},
    )


@app.get(
    f"{PREFIX}/docs/<asset>",
    tags=["ops"],
    summary="Swagger UI's files",
    responses=answers(
        {200: {"description": "JavaScript or CSS", "content": {"text/javascript": {}, "text/css": {}}}},
        404,
        auth=False,
    ),
)
def swagger_ui_asset(
    asset: Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,128}$", max_length=128)],
):  # JavaScript or CSS (no annotation: see openapi)
    found = docs.asset(asset)
    if found is None:
        return _error(404, error_body("no_such_route", f"no Swagger UI file {asset!r}"))
    text, content_type = found
    return Response(
        status_code=200,
        content_type=content_type,
        body=text,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


# ------------------------------------------------------------------ auth
def _session_out(session: Session) -> SessionOut:
    return SessionOut(
        token=session.token,
        expires_in=session.expires_in,
        refresh_token=session.refresh_token,
        refresh_expires_in=session.refresh_expires_in,
        user=UserOut.of(session.user),
    )


@app.post(
    f"{PREFIX}/auth/register",
    status_code=201,
    tags=["auth"],
    responses=answers(201, 409, body=True, auth=False),
)
def register(body: RegisterRequest) -> SessionOut:
    session = api_services().accounts.register(
        username=body.username, email=body.email, password=body.password
    )
    return _session_out(session)


@app.post(f"{PREFIX}/auth/login", tags=["auth"], responses=answers(200, 401, 429, body=True, auth=False))
def login(body: LoginRequest) -> SessionOut:
    """Limited per account and per source address: beyond, 429 `login_throttled` with `Retry-After`."""
    source = app.current_event.request_context.http.source_ip or None
    return _session_out(
        api_services().accounts.login(login=body.login, password=body.password, source=source)
    )


@app.post(f"{PREFIX}/auth/refresh", tags=["auth"], responses=answers(200, 401, body=True, auth=False))
def refresh(body: RefreshRequest) -> SessionOut:
    """Spend the refresh token for a new access token and the next refresh token (the old one is dead:
    presenting it again ends the session everywhere)."""
    return _session_out(api_services().accounts.refresh(body.refresh_token))


@app.post(
    f"{PREFIX}/auth/logout",
    tags=["auth"],
    responses=answers(
        {204: no_content("The session is over (or was not ours to end)")}, body=True, auth=False
    ),
)
def logout(body: RefreshRequest):  # 204, no body (no annotation: see openapi)
    api_services().accounts.logout(body.refresh_token)
    return Response(status_code=204, content_type=None, body="")


@app.get(
    f"{PREFIX}/profile", tags=["auth"], security=BEARER, middlewares=[require_user], responses=answers(200)
)
def profile() -> ProfileOut:
    services = api_services()
    user_id = _claims().user_id
    user = services.accounts.profile(user_id)
    usage = services.quotas.usage(user_id, services.enhance_jobs.jobs)
    return ProfileOut(
        user=UserOut.of(user),
        usage=UsageOut(
            uploads_today=usage.uploads_today,
            stored_bytes=usage.stored_bytes,
            active_jobs=usage.active_jobs,
            limits=QuotasOut(
                uploads_per_day=usage.quotas.uploads_per_day,
                stored_bytes=usage.quotas.stored_bytes,
                active_jobs=usage.quotas.active_jobs,
            ),
            uploads_reset_at=usage.resets_at,
        ),
    )


# ------------------------------------------------------------------ uploads and images
@app.post(
    f"{PREFIX}/uploads",
    status_code=201,
    tags=["images"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(201, 413, 429, body=True),
)
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


@app.get(
    f"{PREFIX}/images",
    tags=["images"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, 400),
)
def list_images(
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048, description="`next_cursor` of a page")] = None,
    state: Annotated[ImageState | None, Query()] = None,
    category: Annotated[Category | None, Query()] = None,
) -> ImageList:
    """Newest first, each with a short-lived thumbnail link (no call per photo to show a grid)."""
    gallery = api_services().gallery
    records, next_cursor = gallery.list_images(
        _claims().user_id, limit=limit, cursor=cursor, state=state, category=category
    )
    return ImageList(
        items=[ImageOut.of(r, ImageUrls(thumbnail=gallery.thumbnail_link(r))) for r in records],
        next_cursor=next_cursor,
    )


@app.post(
    f"{PREFIX}/images/batch-delete",
    tags=["images"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, body=True),
)
def batch_delete(body: BatchDeleteRequest) -> BatchDeleteOut:
    result = api_services().gallery.delete_many(_claims().user_id, body.image_ids)
    return BatchDeleteOut(
        deleted=result.deleted,
        not_found=result.not_found,
        failed=[
            BatchDeleteFailureOut(image_id=f.image_id, code=f.code, message=f.message) for f in result.failed
        ],
    )


@app.get(
    f"{PREFIX}/images/<image_id>",
    tags=["images"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, 404),
)
def get_image(image_id: PathId) -> ImageOut:
    gallery = api_services().gallery
    record = gallery.get(_claims().user_id, image_id)
    links = gallery.links(record)
    return ImageOut.of(
        record, ImageUrls(original=links.original, thumbnail=links.thumbnail, preview=links.preview)
    )


@app.delete(
    f"{PREFIX}/images/<image_id>",
    tags=["images"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers({204: no_content("Deleted, with its files")}, 404),
)
def delete_image(image_id: PathId):  # 204, no body (no annotation: see openapi)
    api_services().gallery.delete(_claims().user_id, image_id)
    return Response(status_code=204, content_type=None, body="")


@app.get(
    f"{PREFIX}/images/<image_id>/classification",
    tags=["classification"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, 404),
)
def get_image_classification(image_id: PathId) -> ImageClassificationOut:
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
    f"{PREFIX}/classify/check-cache",
    tags=["classification"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, body=True),
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


@app.get(
    f"{PREFIX}/stats/today",
    tags=["stats"],
    security=BEARER,
    middlewares=[require_user, require_admin],
    responses=answers(200, 403),
)
def stats_today() -> DayStats:
    return DayStats.model_validate(api_services().insights.today())


@app.get(
    f"{PREFIX}/stats/cache",
    tags=["stats"],
    security=BEARER,
    middlewares=[require_user, require_admin],
    responses=answers(200, 403),
)
def stats_cache(days: Annotated[int, Query(ge=1, le=90)] = 7) -> CacheStatsOut:
    return CacheStatsOut.model_validate(api_services().insights.cache_efficiency(days))


@app.get(
    f"{PREFIX}/stats/categories",
    tags=["stats"],
    security=BEARER,
    middlewares=[require_user, require_admin],
    responses=answers(200, 403),
)
def stats_categories(days: Annotated[int, Query(ge=1, le=90)] = 7) -> CategoryStatsOut:
    return CategoryStatsOut.model_validate(api_services().insights.categories(days))


@app.get(
    f"{PREFIX}/stats/prompt",
    tags=["stats"],
    security=BEARER,
    middlewares=[require_user, require_admin],
    responses=answers(200, 403),
)
def stats_prompt() -> PromptOut:
    """The classification prompt in use: its version (part of every cache key) and text, read-only."""
    return PromptOut(
        version=PROMPT_VERSION,
        model=api_services().settings.model,
        text=build_prompt(),
        retry_text=build_prompt(strict=True).removeprefix(build_prompt()).strip(),
        categories=[
            PromptCategoryOut(
                category=c.value,
                label_zh=CATEGORY_LABELS[c][0],
                label_en=CATEGORY_LABELS[c][1],
                description=CATEGORY_DESCRIPTIONS[c],
            )
            for c in Category
        ],
    )


@app.get(
    f"{PREFIX}/stats/fleet",
    tags=["stats"],
    security=BEARER,
    middlewares=[require_user, require_admin],
    responses=answers(200, 403),
)
def stats_fleet() -> ServersOut:
    """The GPU fleet as the workers registered it (health from their heartbeats)."""
    servers = api_services().fleet.servers()
    healthy = sum(1 for w in servers if w.healthy)
    return ServersOut(
        healthy=healthy, unhealthy=len(servers) - healthy, servers=[WorkerOut.of(w) for w in servers]
    )


# ------------------------------------------------------------------ enhancement jobs
def _redirect(url: str) -> Response:
    return Response(status_code=302, content_type=None, body="", headers={"Location": url})


@app.post(
    f"{PREFIX}/enhance",
    status_code=202,
    tags=["enhance"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(202, 402, 404, 409, 429, 503, body=True),
)
def submit_enhancement(body: EnhanceRequest) -> JobAcceptedOut:
    job = api_services().enhance_jobs.submit(_claims().user_id, body.image_id, body.params)
    return JobAcceptedOut.model_validate(
        {**JobOut.of(job).model_dump(), "status_url": f"{PREFIX}/enhance/{job.job_id}"}
    )


@app.post(
    f"{PREFIX}/enhance/batch",
    status_code=202,
    tags=["enhance"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(202, 402, 404, 409, 429, 503, body=True),
)
def submit_enhancement_batch(body: EnhanceBatchRequest) -> BatchAcceptedOut:
    batch_id, jobs = api_services().enhance_jobs.submit_batch(_claims().user_id, body.image_ids, body.params)
    return BatchAcceptedOut(
        batch_id=batch_id,
        status_url=f"{PREFIX}/enhance/batch/{batch_id}",
        jobs=[JobOut.of(j) for j in jobs],
    )


@app.get(
    f"{PREFIX}/enhance/batch/<batch_id>",
    tags=["enhance"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, 404),
)
def get_enhancement_batch(batch_id: PathId) -> BatchOut:
    jobs = api_services().enhance_jobs
    view = jobs.batch(_claims().user_id, batch_id)
    return BatchOut(
        batch_id=view.batch_id,
        total=len(view.jobs),
        done=view.done,
        counts=view.counts,
        jobs=[JobOut.of(j, jobs.result_url(j)) for j in view.jobs],
    )


@app.get(
    f"{PREFIX}/enhance/batch/<batch_id>/download",
    tags=["enhance"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(
        {
            302: no_content("The ZIP is ready: a short-lived link to it", LOCATION),
            202: json_of(ExportPendingOut, "The ZIP is being written; ask again after `Retry-After` seconds"),
        },
        404,
        409,
    ),
)
def download_enhancement_batch(batch_id: PathId):  # 302 or 202 (no annotation: see openapi)
    outcome = api_services().enhance_jobs.batch_download(_claims().user_id, batch_id)
    if isinstance(outcome, ExportReady):
        return _redirect(outcome.url)
    body = ExportPendingOut(retry_after=outcome.retry_after, message=outcome.message)
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=body.model_dump_json(),
        headers={"Retry-After": str(outcome.retry_after)},
    )


@app.get(
    f"{PREFIX}/enhance/<job_id>",
    tags=["enhance"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, 404),
)
def get_enhancement(job_id: PathId) -> JobOut:
    view = api_services().enhance_jobs.status(_claims().user_id, job_id)
    return JobOut.of(view.job, view.result_url)


@app.get(
    f"{PREFIX}/enhance/<job_id>/download",
    tags=["enhance"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers({302: no_content("A short-lived link to the enhanced JPEG", LOCATION)}, 404, 409),
)
def download_enhancement(job_id: PathId):  # 302 to the result (no annotation: see openapi)
    return _redirect(api_services().enhance_jobs.download_url(_claims().user_id, job_id))


@app.delete(
    f"{PREFIX}/enhance/<job_id>",
    tags=["enhance"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(
        {
            200: json_of(JobOut, "The job was queued or running: it is cancelled"),
            204: no_content("The job had finished: it is deleted, with its result"),
        },
        404,
        409,
    ),
)
def cancel_or_delete_enhancement(job_id: PathId):  # 200 cancelled job, or 204 (no annotation: see openapi)
    job = api_services().enhance_jobs.cancel_or_delete(_claims().user_id, job_id)
    if job is None:
        return Response(status_code=204, content_type=None, body="")
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=JobOut.of(job).model_dump_json()
    )


# ------------------------------------------------------------------ credits and payments
def _order_out(view: OrderView) -> OrderOut:
    return OrderOut.of(view.order, view.jsapi, status_url=f"{PREFIX}/payments/orders/{view.order.order_id}")


def _notify_url() -> str:
    """Where WeChat Pay sends the notify: the configured URL, else this API's own route on the domain the
    request came in on (API Gateway's domain, or the local gateway's)."""
    configured = api_services().settings.wechat_pay_notify_url
    if configured:
        return configured
    event = app.current_event
    host = event.headers.get("host") or event.request_context.domain_name
    scheme = event.headers.get("x-forwarded-proto") or "https"
    return f"{scheme}://{host}{PREFIX}/payments/wechat/notify"


@app.get(
    f"{PREFIX}/credits",
    tags=["payments"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, 400),
)
def get_credits(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> CreditsOut:
    account = api_services().credits.account(_claims().user_id, limit=limit, cursor=cursor)
    return CreditsOut(
        balance=account.balance.balance,
        entries=[CreditEntryOut.of(e) for e in account.entries],
        next_cursor=account.next_cursor,
        packages_url=f"{PREFIX}/payments/packages",
    )


@app.get(f"{PREFIX}/payments/packages", tags=["payments"], responses=answers(200, auth=False))
def list_packages() -> PackagesOut:
    payments = api_services().payments
    return PackagesOut(
        packages=[PackageOut.of(p) for p in payments.packages], payments_enabled=payments.wechat is not None
    )


@app.post(
    f"{PREFIX}/payments/orders",
    status_code=201,
    tags=["payments"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(201, 404, 503, body=True),
)
def create_order(body: CreateOrderRequest) -> OrderOut:
    view = api_services().payments.create_order(
        _claims().user_id, body.package_id, body.method, notify_url=_notify_url(), openid=body.openid
    )
    return _order_out(view)


@app.get(
    f"{PREFIX}/payments/orders/<order_id>",
    tags=["payments"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, 404, 503),
)
def get_order(order_id: PathId) -> OrderOut:
    return _order_out(api_services().payments.get_order(_claims().user_id, order_id))


@app.post(
    f"{PREFIX}/payments/wechat/notify",
    tags=["payments"],
    summary="WeChat Pay's payment notify",
    # WeChat Pay's own answer shape for every status; any non-2xx makes WeChat Pay send the notify again
    responses={
        200: json_of(
            WechatNotifyAnswerOut, "Received (SUCCESS): credited, already credited, or nothing to do"
        ),
        400: json_of(WechatNotifyAnswerOut, "FAIL: the body or its resource cannot be read"),
        401: json_of(WechatNotifyAnswerOut, "FAIL: the signature does not verify, or the timestamp is off"),
        404: json_of(WechatNotifyAnswerOut, "FAIL: no such order"),
        503: json_of(WechatNotifyAnswerOut, "FAIL: payments are not configured, or a dependency is down"),
        422: error_response(422),
    },
)
def wechat_notify():  # the raw body is verified as received (no body model; no annotation: see openapi)
    """Called by WeChat Pay (no user token: it is verified by its signature over the exact bytes)."""
    event = app.current_event
    raw = event.get("body") or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.is_base64_encoded else raw.encode("utf-8")
    except (binascii.Error, ValueError):
        body = b""
    answer = api_services().payments.handle_notify(event.headers, body)
    return Response(
        status_code=answer.status,
        content_type=content_types.APPLICATION_JSON,
        body=WechatNotifyAnswerOut.model_validate(answer.body).model_dump_json(),
    )


@app.post(
    f"{PREFIX}/auth/wechat",
    tags=["auth"],
    security=BEARER,
    middlewares=[require_user],
    responses=answers(200, 503, body=True),
)
def link_wechat(body: WechatLoginRequest) -> WechatLinkOut:
    """Link the caller's account to their WeChat identity (the mini-program's `wx.login()` code)."""
    link = api_services().payments.link_wechat(_claims().user_id, body.code)
    return WechatLinkOut(openid=link.openid, linked_at=link.linked_at)


@app.get(
    f"{PREFIX}/stats/payments",
    tags=["stats"],
    security=BEARER,
    middlewares=[require_user, require_admin],
    responses=answers(200, 403),
)
def stats_payments(days: Annotated[int, Query(ge=1, le=90)] = 7) -> PaymentStatsOut:
    """Orders and revenue per day (UTC), for administrators."""
    return PaymentStatsOut.model_validate(api_services().payments.daily(days))


# ------------------------------------------------------------------ GPU fleet (shared secret, no user token)
def _fleet_secret(body_secret: str | None = None) -> str | None:
    return app.current_event.headers.get("x-fleet-secret") or body_secret


@app.post("/webhook/register", tags=["fleet"], security=FLEET, responses=answers(200, 400, body=True))
def register_worker(body: RegisterWorkerRequest) -> RegisterWorkerOut:
    fleet = api_services().fleet
    fleet.authorize(_fleet_secret(body.secret))
    record = fleet.register(
        body.worker_id,
        url=body.url,
        ip=body.ip,
        port=body.port,
        provider=body.provider,
        max_batch=body.max_batch,
        version=body.version,
    )
    return RegisterWorkerOut(worker=WorkerOut.of(record))


@app.post("/webhook/unregister", tags=["fleet"], security=FLEET, responses=answers(200, 400, body=True))
def unregister_worker(body: UnregisterWorkerRequest) -> UnregisterWorkerOut:
    fleet = api_services().fleet
    fleet.authorize(_fleet_secret(body.secret))
    worker_id = body.worker_id or (f"{body.ip}:{body.port or 8000}" if body.ip else None)
    if not worker_id:
        raise BadRequestError("send the worker_id (or the old form: ip and port)", code="bad_request")
    return UnregisterWorkerOut(removed=fleet.unregister(worker_id))


@app.get("/webhook/servers", tags=["fleet"], security=FLEET, responses=answers(200))
def list_workers() -> ServersOut:
    fleet = api_services().fleet
    fleet.authorize(_fleet_secret())
    servers = fleet.servers()
    healthy = sum(1 for w in servers if w.healthy)
    return ServersOut(
        healthy=healthy, unhealthy=len(servers) - healthy, servers=[WorkerOut.of(w) for w in servers]
    )
