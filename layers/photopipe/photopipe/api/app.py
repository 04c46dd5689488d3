"""Routes of the HTTP API. Errors are mapped to `{"error": {"code", "message"}}` in one place below."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFound
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Query

from photopipe import __version__
from photopipe.api import docs
from photopipe.api.schemas import (
    BatchAcceptedOut,
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
    RegisterRequest,
    RegisterWorkerOut,
    RegisterWorkerRequest,
    ServersOut,
    SessionOut,
    UnregisterWorkerOut,
    UnregisterWorkerRequest,
    UploadOut,
    UploadRequest,
    UserOut,
    WechatLinkOut,
    WechatLoginRequest,
    WechatNotifyAnswerOut,
    WorkerOut,
)
from photopipe.auth.tokens import Claims
from photopipe.classification import PROMPT_VERSION, build_prompt
from photopipe.classification.prompt import CATEGORY_DESCRIPTIONS
from photopipe.errors import BadRequestError, ForbiddenError, PhotopipeError, error_body
from photopipe.models import CATEGORY_LABELS, Category, ImageState
from photopipe.observability import logger
from photopipe.usecases.enhance_jobs import ExportReady
from photopipe.usecases.payments import OrderView
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
        body=json.dumps(error_body(code, message)),
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
    fleet = api_services().fleet.health()
    return HealthOut(
        status="ok",
        version=__version__,
        fleet=FleetHealthOut(healthy=fleet.healthy, unhealthy=fleet.unhealthy),
    )


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
        docs_url=f"{PREFIX}/docs",
    )


@app.get(f"{PREFIX}/openapi.json", tags=["ops"], summary="This OpenAPI document")
def openapi():  # no return annotation: a Response one breaks OpenAPI generation
    # The whole HTTP API: these routes plus POST /classify, which its own function serves (it writes the
    # classification cache and the counters, which this function may only read).
    from photopipe.api.classify_app import merged_openapi

    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=merged_openapi(app))


@app.get(f"{PREFIX}/docs", tags=["ops"], summary="Swagger UI for this API")
def swagger_ui():  # HTML (no annotation: see openapi)
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=docs.PAGE,
        headers={"Content-Security-Policy": docs.CSP, "X-Content-Type-Options": "nosniff"},
    )


@app.get(f"{PREFIX}/docs/<asset>", tags=["ops"], summary="Swagger UI's files")
def swagger_ui_asset(asset: str):  # JavaScript or CSS (no annotation: see openapi)
    found = docs.asset(asset)
    if found is None:
        return _error(404, "no_such_route", f"no Swagger UI file {asset!r}")
    text, content_type = found
    return Response(
        status_code=200,
        content_type=content_type,
        body=text,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
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


@app.get(f"{PREFIX}/stats/prompt", tags=["stats"], security=BEARER, middlewares=[require_user])
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


@app.get(f"{PREFIX}/stats/fleet", tags=["stats"], security=BEARER, middlewares=[require_user])
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


@app.post(f"{PREFIX}/enhance", status_code=202, tags=["enhance"], security=BEARER, middlewares=[require_user])
def submit_enhancement(body: EnhanceRequest) -> JobAcceptedOut:
    job = api_services().enhance_jobs.submit(_claims().user_id, body.image_id, body.params)
    return JobAcceptedOut.model_validate(
        {**JobOut.of(job).model_dump(), "status_url": f"{PREFIX}/enhance/{job.job_id}"}
    )


@app.post(
    f"{PREFIX}/enhance/batch", status_code=202, tags=["enhance"], security=BEARER, middlewares=[require_user]
)
def submit_enhancement_batch(body: EnhanceBatchRequest) -> BatchAcceptedOut:
    batch_id, jobs = api_services().enhance_jobs.submit_batch(_claims().user_id, body.image_ids, body.params)
    return BatchAcceptedOut(
        batch_id=batch_id,
        status_url=f"{PREFIX}/enhance/batch/{batch_id}",
        jobs=[JobOut.of(j) for j in jobs],
    )


@app.get(f"{PREFIX}/enhance/batch/<batch_id>", tags=["enhance"], security=BEARER, middlewares=[require_user])
def get_enhancement_batch(batch_id: str) -> BatchOut:
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
)
def download_enhancement_batch(batch_id: str):  # 302 or 202 (no annotation: see openapi)
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


@app.get(f"{PREFIX}/enhance/<job_id>", tags=["enhance"], security=BEARER, middlewares=[require_user])
def get_enhancement(job_id: str) -> JobOut:
    view = api_services().enhance_jobs.status(_claims().user_id, job_id)
    return JobOut.of(view.job, view.result_url)


@app.get(f"{PREFIX}/enhance/<job_id>/download", tags=["enhance"], security=BEARER, middlewares=[require_user])
def download_enhancement(job_id: str):  # 302 to the result (no annotation: see openapi)
    return _redirect(api_services().enhance_jobs.download_url(_claims().user_id, job_id))


@app.delete(f"{PREFIX}/enhance/<job_id>", tags=["enhance"], security=BEARER, middlewares=[require_user])
def cancel_or_delete_enhancement(job_id: str):  # 200 cancelled job, or 204 (no annotation: see openapi)
    job = api_services().enhance_jobs.cancel_or_delete(_claims().user_id, job_id)
    if job is None:
        return Response(status_code=204, content_type=None, body="")
    return Response(
        status_code=200, content_type=content_types.APPLICATION_JSON, body=JobOut.of(job).model_dump_json()
    )


# ------------------------------------------------------------------ credits and payments
def require_payments_admin(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    """The payment statistics are for administrators. Until users carry an admin flag, an administrator is
    a user id listed in PHOTOPIPE_PAYMENTS_ADMINS (none by default); switch this to the admin dependency
    once it exists."""
    claims = api_services().accounts.authenticate(app.current_event.headers.get("authorization"))
    if claims.user_id not in api_services().settings.payments_admin_ids:
        raise ForbiddenError("the payment statistics are for administrators", code="admin_only")
    app.append_context(claims=claims)
    return next_middleware(app)


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


@app.get(f"{PREFIX}/credits", tags=["payments"], security=BEARER, middlewares=[require_user])
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


@app.get(f"{PREFIX}/payments/packages", tags=["payments"])
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
)
def create_order(body: CreateOrderRequest) -> OrderOut:
    view = api_services().payments.create_order(
        _claims().user_id, body.package_id, body.method, notify_url=_notify_url(), openid=body.openid
    )
    return _order_out(view)


@app.get(
    f"{PREFIX}/payments/orders/<order_id>", tags=["payments"], security=BEARER, middlewares=[require_user]
)
def get_order(order_id: str) -> OrderOut:
    return _order_out(api_services().payments.get_order(_claims().user_id, order_id))


@app.post(f"{PREFIX}/payments/wechat/notify", tags=["payments"], summary="WeChat Pay's payment notify")
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


@app.post(f"{PREFIX}/auth/wechat", tags=["auth"], security=BEARER, middlewares=[require_user])
def link_wechat(body: WechatLoginRequest) -> WechatLinkOut:
    """Link the caller's account to their WeChat identity (the mini-program's `wx.login()` code)."""
    link = api_services().payments.link_wechat(_claims().user_id, body.code)
    return WechatLinkOut(openid=link.openid, linked_at=link.linked_at)


@app.get(f"{PREFIX}/stats/payments", tags=["stats"], security=BEARER, middlewares=[require_payments_admin])
def stats_payments(days: Annotated[int, Query(ge=1, le=90)] = 7) -> PaymentStatsOut:
    """Orders and revenue per day (UTC), for administrators."""
    return PaymentStatsOut.model_validate(api_services().payments.daily(days))


# ------------------------------------------------------------------ GPU fleet (shared secret, no user token)
def _fleet_secret(body_secret: str | None = None) -> str | None:
    return app.current_event.headers.get("x-fleet-secret") or body_secret


@app.post("/webhook/register", tags=["fleet"])
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


@app.post("/webhook/unregister", tags=["fleet"])
def unregister_worker(body: UnregisterWorkerRequest) -> UnregisterWorkerOut:
    fleet = api_services().fleet
    fleet.authorize(_fleet_secret(body.secret))
    worker_id = body.worker_id or (f"{body.ip}:{body.port or 8000}" if body.ip else None)
    if not worker_id:
        raise BadRequestError("send the worker_id (or the old form: ip and port)", code="bad_request")
    return UnregisterWorkerOut(removed=fleet.unregister(worker_id))


@app.get("/webhook/servers", tags=["fleet"])
def list_workers() -> ServersOut:
    fleet = api_services().fleet
    fleet.authorize(_fleet_secret())
    servers = fleet.servers()
    healthy = sum(1 for w in servers if w.healthy)
    return ServersOut(
        healthy=healthy, unhealthy=len(servers) - healthy, servers=[WorkerOut.of(w) for w in servers]
    )
