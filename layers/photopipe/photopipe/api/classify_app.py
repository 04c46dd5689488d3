"""`POST /api/v1/classify`, the classify test: one photo in the request body, its category in the answer,
through the same exact and near-duplicate caches and counters as an uploaded photo (the old classification
service's main endpoint). Its own function serves it: it writes the classification cache and the daily
counters, which the API function may only read. Errors are answered as the API's are."""

from __future__ import annotations

import base64
import binascii
import json
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError as RouteNotFound
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

from photopipe import __version__
from photopipe.api.app import PREFIX, _domain_error, _error, _invalid_request
from photopipe.api.schemas import ClassifyOut, ErrorBody
from photopipe.errors import BadRequestError, PayloadTooLargeError, PhotopipeError, error_body
from photopipe.models import CATEGORY_LABELS, Category
from photopipe.usecases.accounts import authenticate
from photopipe.wiring import classify_api

CLASSIFY_PATH = f"{PREFIX}/classify"
# The body is read from the raw event (binary), so the document says what it takes.
_REQUEST_BODY = {
    "required": True,
    "content": {
        "image/*": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
                "required": ["file"],
            }
        },
    },
}

app = APIGatewayHttpResolver(enable_validation=True)
app.configure_openapi(
    title="photopipe classify test",
    version=__version__,
    security_schemes={"bearerAuth": HTTPBearer(bearerFormat="JWT")},
)
app.exception_handler(PhotopipeError)(_domain_error)
app.exception_handler(RequestValidationError)(_invalid_request)


@app.not_found
def _no_route(_: RouteNotFound) -> Response:
    path = f"{app.current_event.http_method} {app.current_event.path}"
    return _error(404, error_body("no_such_route", f"no route {path}"))


def _error_responses() -> dict[int, dict[str, Any]]:
    schema = {"content": {"application/json": {"schema": ErrorBody.model_json_schema()}}}
    reasons = {
        400: "No photo in the body",
        401: "Missing or refused token",
        413: "The photo is larger than this route accepts",
        422: "Not a photo photopipe accepts (the reason says why)",
        502: "The vision model failed",
        503: "No vision model is configured, or the same photo is being classified right now",
    }
    return {status: {"description": text, **schema} for status, text in reasons.items()}


@app.post(
    CLASSIFY_PATH,
    tags=["classification"],
    summary="Classify one photo now",
    description=(
        "Send the photo as the body (Content-Type image/jpeg, image/png, ...) or as the form field `file` "
        "(multipart/form-data, like the old service). Answered from the exact cache (same bytes), the "
        "near-duplicate cache (same picture re-encoded or resized) or one call to the vision model; counted "
        "in the statistics. Up to about 4.4 MB: Lambda's request payload limit once base64-encoded."
    ),
    security=[{"bearerAuth": []}],
    responses=_error_responses(),  # type: ignore[arg-type]
)
def classify_now() -> ClassifyOut:
    services = classify_api()
    claims = authenticate(services.tokens, app.current_event.headers.get("authorization"))
    data = _photo(app.current_event.raw_event, services.settings.max_request_image_bytes)
    context = app.lambda_context
    answer = services.classifier.classify_bytes(
        data,
        user_id=claims.user_id,
        time_left=lambda: context.get_remaining_time_in_millis() / 1000,
    )
    verdict = answer.verdict
    zh, en = CATEGORY_LABELS[Category(verdict.category)]
    return ClassifyOut(
        category=verdict.category,
        label_zh=zh,
        label_en=en,
        confidence=verdict.confidence,
        reason=verdict.reason,
        source=verdict.source,
        distance=verdict.distance,
        model=services.classifier.cache.model,
        prompt_version=services.classifier.cache.prompt_version,
        format=answer.format,
        width=answer.width,
        height=answer.height,
        bytes=answer.bytes,
        sha256=answer.sha256,
        phash=answer.phash,
    )


def _photo(event: dict[str, Any], max_bytes: int) -> bytes:
    """The photo in the request: the whole body, or the `file` part of a multipart form."""
    raw = event.get("body") or ""
    try:
        body = base64.b64decode(raw, validate=True) if event.get("isBase64Encoded") else raw.encode("utf-8")
    except (binascii.Error, ValueError) as e:
        raise BadRequestError("the body is not valid base64", code="bad_request") from e
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    content_type = headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        body = _form_file(body, content_type)
    if not body:
        raise BadRequestError(
            "send the photo as the request body (Content-Type image/...) or as the form field `file`",
            code="no_photo",
        )
    if len(body) > max_bytes:
        raise PayloadTooLargeError(
            f"the photo is {len(body)} bytes; this route takes up to {max_bytes} bytes (upload larger photos "
            "with POST /api/v1/uploads, or compress it first)",
            code="too_large",
        )
    return body


def _form_file(body: bytes, content_type: str) -> bytes:
    message: Message = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode("latin-1") + body
    )
    if not message.is_multipart():
        raise BadRequestError("the multipart form could not be read", code="bad_request")
    for part in message.iter_parts():  # type: ignore[attr-defined]
        if part.get_param("name", header="content-disposition") == "file":
            payload = part.get_payload(decode=True)
            return payload if isinstance(payload, bytes) else b""
    raise BadRequestError("the form has no `file` field", code="no_photo")


def merged_openapi(main: APIGatewayHttpResolver) -> str:
    """The main app's OpenAPI document with this route added: one document for the whole HTTP API."""
    document = json.loads(main.get_openapi_json_schema())
    own = json.loads(app.get_openapi_json_schema())
    own["paths"][CLASSIFY_PATH]["post"]["requestBody"] = _REQUEST_BODY
    document["paths"].update(own["paths"])
    components = document.setdefault("components", {}).setdefault("schemas", {})
    components.update(own.get("components", {}).get("schemas", {}))
    return json.dumps(document)
