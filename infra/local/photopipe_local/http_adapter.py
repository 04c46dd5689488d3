"""Serve the template's HttpApi routes from the real handlers: HTTP -> API Gateway v2 event -> HTTP.

The event is payload format 2.0 as API Gateway HTTP APIs build it (route key, raw path and query string,
lower-cased headers with duplicates comma-joined, cookies, path parameters, request context, base64 bodies
for binary content), and the handler's result is read the way API Gateway reads it (a response object, or
any other JSON value, which becomes a 200 JSON response). Unknown routes answer 404 `{"message":"Not
Found"}`, handler errors 500 `{"message":"Internal Server Error"}`, bodies over 10 MB 413, and CORS
preflights are answered from the API's CorsConfiguration, as API Gateway does.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from photopipe_local.runtime import LocalFunction
from photopipe_local.template import (
    DEFAULT_ACCOUNT_ID,
    LOCAL_API_ID,
    CorsConfig,
    FunctionSpec,
    HttpApiSpec,
)

logger = logging.getLogger("photopipe_local.http")

MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024  # a synchronous invocation's response limit
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-yaml")
_HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})


# ------------------------------------------------------------------------------------------- routes


@dataclass(frozen=True)
class Route:
    """One route of an HTTP API: `GET /api/v1/images/{image_id}`, `ANY /files/{proxy+}` or `$default`."""

    method: str
    path: str
    function: str  # logical id
    api: str  # logical id of the HttpApi

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(self.path[1:].split("/"))

    def match_path(self, path: str) -> dict[str, str] | None:
        """Path parameters when the raw `path` fits this route, else None. A trailing slash is a different
        path; parameter values are percent-decoded, as API Gateway passes them."""
        if self.path == "$default":
            return {}
        if not path.startswith("/"):
            return None
        wanted = self.segments
        given = tuple(path[1:].split("/"))
        parameters: dict[str, str] = {}
        for i, segment in enumerate(wanted):
            if segment.startswith("{") and segment.endswith("+}"):
                rest = given[i:]
                if not rest or not rest[0]:
                    return None
                parameters[segment[1:-2]] = unquote("/".join(rest))
                return parameters
            if i >= len(given):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                if not given[i]:
                    return None
                parameters[segment[1:-1]] = unquote(given[i])
            elif unquote(given[i]) != segment:
                return None
        return parameters if len(given) == len(wanted) else None

    def precedence(self) -> tuple[Any, ...]:
        """Sort key: the most specific route first (literal segments beat parameters beat greedy ones,
        a named method beats ANY, `$default` comes last), as API Gateway chooses."""
        if self.path == "$default":
            return (2,)
        kinds = tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in self.segments)
        return (1 if 2 in kinds else 0, kinds, self.method == "ANY")


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=Route.precedence)
        seen: dict[str, Route] = {}
        for route in self.routes:
            if route.route_key in seen and seen[route.route_key] != route:
                other = seen[route.route_key]
                raise ValueError(
                    f"route {route.route_key} is declared by both {other.function} and {route.function}"
                )
            seen[route.route_key] = route

    @classmethod
    def from_functions(cls, functions: Iterable[FunctionSpec]) -> RouteTable:
        return cls(
            Route(method=e.method, path=e.path, function=f.logical_id, api=e.api)
            for f in functions
            for e in f.http_events
        )

    def match(self, method: str, path: str) -> RouteMatch | None:
        for route in self.routes:
            if route.method not in ("ANY", method.upper()):
                continue
            parameters = route.match_path(path)
            if parameters is not None:
                return RouteMatch(route, parameters)
        return None

    def api_for_path(self, path: str) -> str | None:
        """The API whose routes cover `path` with any method (to answer a CORS preflight)."""
        return next((r.api for r in self.routes if r.match_path(path) is not None), None)


# --------------------------------------------------------------------------------------------- event


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return True
    media_type = content_type.split(";", 1)[0].strip().lower()
    return (
        media_type.startswith("text/") or media_type in _TEXT_TYPES or media_type.endswith(("+json", "+xml"))
    )


def api_gateway_time(now: datetime) -> str:
    """`12/Mar/2020:19:03:58 +0000`, independent of the locale."""
    now = now.astimezone(UTC)
    return f"{now:%d}/{_MONTHS[now.month - 1]}/{now:%Y:%H:%M:%S} +0000"


def build_event(
    *,
    method: str,
    raw_path: str,
    raw_query: str,
    headers: Sequence[tuple[str, str]],
    body: bytes,
    route_key: str,
    path_parameters: Mapping[str, str],
    source_ip: str = "127.0.0.1",
    server_port: int = 3000,
    account_id: str = DEFAULT_ACCOUNT_ID,
    api_id: str = LOCAL_API_ID,
    protocol: str = "HTTP/1.1",
    request_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API (payload format 2.0) event for one request."""
    now = now or datetime.now(UTC)
    joined: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        joined[key] = f"{joined[key]},{value}" if key in joined else value
    joined.setdefault("x-forwarded-for", source_ip)
    joined.setdefault("x-forwarded-port", str(server_port))
    joined.setdefault("x-forwarded-proto", "http")
    joined.setdefault("x-amzn-trace-id", f"Root=1-{int(now.timestamp()):08x}-{uuid.uuid4().hex[:24]}")
    domain_name = joined.get("host", "localhost").rsplit(":", 1)[0] if joined.get("host") else "localhost"
    request_id = request_id or base64.b64encode(os.urandom(10)).decode()

    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if raw_query:
        parameters: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            parameters[key] = f"{parameters[key]},{value}" if key in parameters else value
        event["queryStringParameters"] = parameters
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", 1)[0],
        "http": {
            "method": method.upper(),
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": joined.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": "$default",
        "time": api_gateway_time(now),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    is_base64 = False
    if body:
        text: str | None = None
        if _is_text(joined.get("content-type")):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            text, is_base64 = base64.b64encode(body).decode(), True
        event["body"] = text
    event["isBase64Encoded"] = is_base64
    return event


# ------------------------------------------------------------------------------------------ response


class MalformedResponseError(ValueError):
    """The handler's return value is not something API Gateway can turn into an HTTP response."""


@dataclass
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    @classmethod
    def json(cls, status: int, payload: Any) -> HttpResponse:
        return cls(status, [("content-type", "application/json")], json.dumps(payload).encode())

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def _header_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise MalformedResponseError(f"header {name!r} has a non-scalar value {value!r}")


def response_from_result(result: Any) -> HttpResponse:
    """Read a Lambda result the way API Gateway payload format 2.0 does."""
    try:
        serialised = json.dumps(result)  # what actually leaves Lambda: JSON
    except (TypeError, ValueError) as e:
        raise MalformedResponseError(f"the handler returned a value Lambda cannot serialise: {e}") from e
    if len(serialised.encode()) > MAX_LAMBDA_RESPONSE_BYTES:
        raise MalformedResponseError(
            f"the response is {len(serialised.encode())} bytes; Lambda refuses responses over 6 MB"
        )
    result = json.loads(serialised)
    if isinstance(result, str):
        return HttpResponse(200, [("content-type", "application/json")], result.encode())
    if not isinstance(result, dict) or "statusCode" not in result:
        return HttpResponse.json(200, result)

    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedResponseError(f"statusCode must be an HTTP status number, got {status!r}")
    headers: list[tuple[str, str]] = []
    for name, value in (result.get("headers") or {}).items():
        headers.append((str(name), _header_value(name, value)))
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise MalformedResponseError(f"multiValueHeaders[{name!r}] must be a list")
        headers.extend((str(name), _header_value(name, v)) for v in values)
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list):
        raise MalformedResponseError("cookies must be a list of Set-Cookie values")
    headers.extend(("set-cookie", str(c)) for c in cookies)
    body = result.get("body")
    if body is None:
        payload = b""
    elif not isinstance(body, str):
        raise MalformedResponseError(f"body must be a string, got {type(body).__name__}")
    elif result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body, validate=True)
        except ValueError as e:
            raise MalformedResponseError("isBase64Encoded is true but body is not base64") from e
    else:
        payload = body.encode()
    return HttpResponse(status, headers, payload)


# ---------------------------------------------------------------------------------------------- CORS


def _origin_allowed(cors: CorsConfig, origin: str) -> bool:
    return any(allowed == "*" or fnmatch.fnmatchcase(origin, allowed) for allowed in cors.allow_origins)


def _allow_origin_value(cors: CorsConfig, origin: str) -> str:
    return "*" if "*" in cors.allow_origins and not cors.allow_credentials else origin


def preflight_response(cors: CorsConfig, origin: str) -> HttpResponse:
    response = HttpResponse(204)
    if not _origin_allowed(cors, origin):
        return response
    response.headers.append(("access-control-allow-origin", _allow_origin_value(cors, origin)))
    if cors.allow_methods:
        response.headers.append(("access-control-allow-methods", ",".join(cors.allow_methods)))
    if cors.allow_headers:
        response.headers.append(("access-control-allow-headers", ",".join(cors.allow_headers)))
    if cors.max_age is not None:
        response.headers.append(("access-control-max-age", str(cors.max_age)))
    if cors.allow_credentials:
        response.headers.append(("access-control-allow-credentials", "true"))
    return response


def apply_cors(response: HttpResponse, cors: CorsConfig, origin: str | None) -> None:
    """With CORS configured, API Gateway ignores the integration's CORS headers and sets its own."""
    response.headers = [(k, v) for k, v in response.headers if not k.lower().startswith("access-control-")]
    if origin is None or not _origin_allowed(cors, origin):
        return
    value = _allow_origin_value(cors, origin)
    response.headers.append(("access-control-allow-origin", value))
    if value != "*":
        response.headers.append(("vary", "origin"))
    if cors.expose_headers:
        response.headers.append(("access-control-expose-headers", ",".join(cors.expose_headers)))
    if cors.allow_credentials:
        response.headers.append(("access-control-allow-credentials", "true"))


# -------------------------------------------------------------------------------------------- server


@dataclass(frozen=True)
class HttpRequest:
    method: str
    raw_path: str
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str = "127.0.0.1"
    server_port: int = 3000


class HttpApiApp:
    """Route a request, build the event, invoke the function, translate the result (no sockets)."""

    def __init__(
        self,
        routes: RouteTable,
        functions: Mapping[str, LocalFunction],
        apis: Iterable[HttpApiSpec] = (),
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
    ) -> None:
        self.routes = routes
        self.functions = functions
        self.apis = {api.logical_id: api for api in apis}
        self.account_id = account_id
        missing = {r.function for r in routes.routes} - set(functions)
        if missing:
            raise ValueError(f"routes point at functions that are not loaded: {sorted(missing)}")

    def _cors_for(self, api: str | None) -> CorsConfig | None:
        if api is not None and api in self.apis:
            return self.apis[api].cors
        configured = [a.cors for a in self.apis.values() if a.cors is not None]
        return configured[0] if len(configured) == 1 else None

    def handle(self, request: HttpRequest) -> HttpResponse:
        request_id = base64.b64encode(os.urandom(10)).decode()
        response = self._handle(request, request_id)
        response.headers.append(("apigw-requestid", request_id))
        return response

    def _handle(self, request: HttpRequest, request_id: str) -> HttpResponse:
        headers = {k.lower(): v for k, v in request.headers}
        origin = headers.get("origin")
        path = request.raw_path
        if request.method == "OPTIONS" and origin and "access-control-request-method" in headers:
            cors = self._cors_for(self.routes.api_for_path(path))
            if cors is not None:
                return preflight_response(cors, origin)
        match = self.routes.match(request.method, path)
        if match is None:
            response = HttpResponse.json(404, {"message": "Not Found"})
            cors = self._cors_for(self.routes.api_for_path(path))
            if cors is not None:
                apply_cors(response, cors, origin)
            return response
        route = match.route
        event = build_event(
            method=request.method,
            raw_path=path,
            raw_query=request.raw_query,
            headers=request.headers,
            body=request.body,
            route_key=route.route_key,
            path_parameters=match.path_parameters,
            source_ip=request.source_ip,
            server_port=request.server_port,
            account_id=self.account_id,
            api_id=self.apis[route.api].api_id if route.api in self.apis else LOCAL_API_ID,
            request_id=request_id,
        )
        function = self.functions[route.function]
        try:
            result = function.invoke(event)
        except Exception:
            # API Gateway answers 500 when the function fails; the traceback is the developer's clue.
            logger.exception(
                "http handler raised", extra={"function": route.function, "route": route.route_key}
            )
            response = HttpResponse.json(500, {"message": "Internal Server Error"})
        else:
            try:
                response = response_from_result(result)
            except MalformedResponseError as e:
                logger.error(
                    "malformed Lambda response; API Gateway would answer 500",
                    extra={"function": route.function, "route": route.route_key, "problem": str(e)},
                )
                response = HttpResponse.json(500, {"message": "Internal Server Error"})
        cors = self._cors_for(route.api)
        if cors is not None:
            apply_cors(response, cors, origin)
        return response


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    app: HttpApiApp
    max_body_bytes: int


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def version_string(self) -> str:
        return "photopipe-local"

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_GET

    def _read_body(self) -> bytes | None:
        """The request body, or None when it exceeds the limit (the caller answers 413)."""
        limit = self.server.max_body_bytes
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                chunk_size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if chunk_size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                size += chunk_size
                if size > limit:
                    return None
                chunks.append(self.rfile.read(chunk_size))
                self.rfile.readline(1024)
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        if length > limit:
            return None
        return self.rfile.read(length) if length else b""

    def _handle(self) -> None:
        started = time.monotonic()
        split = urlsplit(self.path)
        try:
            body = self._read_body()
        except ValueError:  # an unparsable Content-Length or chunk size
            body = b""
            self.close_connection = True
            response = HttpResponse.json(400, {"message": "Bad Request"})
            self._write(response)
            return
        if body is None:
            self.close_connection = True
            response = HttpResponse.json(413, {"message": "Request Entity Too Large"})
            response.headers.append(("connection", "close"))
        else:
            request = HttpRequest(
                method=self.command,
                raw_path=split.path or "/",
                raw_query=split.query,
                headers=list(self.headers.items()),
                body=body,
                source_ip=self.client_address[0],
                server_port=self.server.server_address[1],
            )
            response = self.server.app.handle(request)
        self._write(response)
        logger.info(
            "http request",
            extra={
                "method": self.command,
                "path": split.path,
                "status": response.status,
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )

    def _write(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in _HOP_BY_HOP or name.lower() == "connection":
                self.send_header(name, value)
        self.send_header("content-length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http server: " + format, *args)


class HttpApiServer:
    """A `ThreadingHTTPServer` on loopback in front of `HttpApiApp`."""

    def __init__(
        self,
        app: HttpApiApp,
        *,
        host: str = "127.0.0.1",
        port: int = 3000,
        max_body_bytes: int = MAX_REQUEST_BODY_BYTES,
    ) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.max_body_bytes = max_body_bytes
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the HTTP server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        try:
            server = _Server((self.host, self.requested_port), _RequestHandler)
        except OSError as e:
            raise OSError(
                e.errno,
                f"cannot listen on {self.host}:{self.requested_port} for the HTTP API: {e.strerror} "
                "(set PHOTOPIPE_PORT to another port)",
            ) from e
        server.app = self.app
        server.max_body_bytes = self.max_body_bytes
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http-api", daemon=True
        )
        self._thread.start()
        logger.info("http api listening", extra={"url": self.url, "routes": len(self.app.routes.routes)})

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None
