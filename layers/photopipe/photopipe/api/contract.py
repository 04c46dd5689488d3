"""The HTTP contract's edges, kept out of the routes: what each route declares it may answer (with the one
error schema), the strict JSON body parser, and which methods a path allows (for 405 + `Allow`)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from photopipe.api.schemas import ErrorBody

_DESCRIPTIONS = {
    400: "The body is not JSON (`invalid_json`), or the request is refused as it stands",
    401: "No valid access token (or fleet secret, or refresh token)",
    402: "Not enough credits (`insufficient_credits`): the message says how to buy more",
    403: "Signed in, but not allowed (`admin_only`)",
    404: "No such resource among the caller's own",
    409: "The resource is not in a state that allows this",
    413: "Larger than the deployment allows",
    415: "The body is not `application/json`",
    422: "The request does not match the schema (`invalid_request`, naming the field)",
    429: "A limit was reached (`quota_exceeded`, `login_throttled`): `error.limit` names it; `Retry-After` "
    "and `error.resets_at` say when it resets, when time resets it",
    503: "A dependency is not available right now (e.g. no enhancement worker): try again later",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until the limit resets (absent for limits that time does not reset)",
        "schema": {"type": "integer"},
    }
}
LOCATION = {
    "Location": {"description": "Where the file is (a short-lived link)", "schema": {"type": "string"}}
}


def error_response(status: int) -> OpenAPIResponse:
    response: OpenAPIResponse = {
        "description": _DESCRIPTIONS[status],
        "content": {"application/json": {"model": ErrorBody}},
    }
    if status == 429:
        response["headers"] = dict(_RETRY_AFTER)  # type: ignore[arg-type]
    return response


def answers(
    success: Mapping[int, OpenAPIResponse] | int,
    *errors: int,
    body: bool = False,
    auth: bool = True,
) -> dict[int, OpenAPIResponse]:
    """Every status a route can answer. `success`: its status (the body from its return annotation), or
    the success responses spelled out. `body`: it takes a JSON body (400 `invalid_json`, 415). `auth`: it
    needs a token (401). 422 is always declared: Powertools validates every route."""
    declared: dict[int, OpenAPIResponse] = (
        {success: {"description": "Success"}} if isinstance(success, int) else dict(success)
    )
    codes = set(errors) | {422} | ({400, 415} if body else set()) | ({401} if auth else set())
    for status in sorted(codes):
        declared[status] = error_response(status)
    return declared


def no_content(description: str, headers: Mapping[str, Any] | None = None) -> OpenAPIResponse:
    response: OpenAPIResponse = {"description": description, "content": {}}
    if headers:
        response["headers"] = dict(headers)
    return response


def json_of(model: Any, description: str, headers: Mapping[str, Any] | None = None) -> OpenAPIResponse:
    response: OpenAPIResponse = {
        "description": description,
        "content": {"application/json": {"model": model}},
    }
    if headers:
        response["headers"] = dict(headers)
    return response


# ------------------------------------------------------------------ the body parser
class _NotJson(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not JSON")


def _check_text(value: Any) -> None:
    """Strings (and keys) must be encodable as UTF-8: a lone surrogate (`"\\ud800"`) parses in Python but
    cannot be stored or sent anywhere."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def strict_json(text: str) -> Any:
    """`json.loads` for request bodies, refusing what RFC 8259 does not allow (NaN, Infinity, lone
    surrogates). Raises `json.JSONDecodeError`, which the validation middleware reports as `json_invalid`."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
        _check_text(value)
    except (_NotJson, UnicodeEncodeError) as e:
        raise json.JSONDecodeError(str(e), text, 0) from e
    return value


# ------------------------------------------------------------------ methods per path (405 + Allow)
def _path_regex(path: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^/}]+\})", path)
    return re.compile("^" + "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


class MethodIndex:
    """Which methods each documented path answers, from the OpenAPI paths (`/images/{image_id}`)."""

    def __init__(self, paths: Mapping[str, Iterable[str]]) -> None:
        self._paths = [(_path_regex(path), {m.upper() for m in methods}) for path, methods in paths.items()]

    def allowed(self, path: str) -> set[str]:
        found: set[str] = set()
        for regex, methods in self._paths:
            if regex.match(path):
                found |= methods
        return found
