"""The local API Gateway: one Starlette app (`gateway_app(routes)`), served by uvicorn in a thread.

The routes compose in order, the first full match winning: the template's HTTP APIs (`HttpApi`) today; the
WebSocket API (`/ws`: `$connect` authorizer, connect/disconnect handlers, the `@connections` management API)
and the web UI's static files (`/`) join them in `LocalStack._gateway_routes`. `HttpApi` gives the real
handler API Gateway's payload format 2.0 event, reads its result as API Gateway does, and answers as API
Gateway at the edge: 404, 405 with `Allow`, 413 over 10 MB, 400, 500, CORS preflights; all JSON, never HTML.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import h11
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from photopipe_local.runtime import LocalFunction
from photopipe_local.template import DEFAULT_ACCOUNT_ID, LOCAL_API_ID, CorsConfig, FunctionSpec, Route

logger = logging.getLogger("photopipe_local.http")

MAX_REQUEST_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_LAMBDA_RESPONSE_BYTES = 6 * 1024 * 1024  # a synchronous invocation's response limit
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_TEXT_TYPES = ("application/json", "application/xml", "application/javascript", "application/x-yaml")
_HOP_BY_HOP = frozenset({"connection", "content-length", "transfer-encoding", "keep-alive"})
_REASONS = {400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Request Entity Too Large"}


def error_response(status: int, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """An answer of the gateway's own, worded as API Gateway's: `{"message": "Not Found"}`."""
    return JSONResponse({"message": _REASONS.get(status, "Internal Server Error")}, status, headers=headers)


@dataclass(frozen=True)
class RouteMatch:
    route: Route
    path_parameters: dict[str, str]


class RouteTable:
    """API Gateway's route selection (greedy `{proxy+}`, literal segments and named methods first, then
    `$default`), which Starlette's path routing does not reproduce."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=Route.precedence)
        seen: dict[str, Route] = {}
        for route in self.routes:
            if (other := seen.setdefault(route.route_key, route)) != route:
                functions = f"{other.function} and {route.function}"
                raise ValueError(f"route {route.route_key} is declared by both {functions}")

    @classmethod
    def from_functions(cls, functions: Iterable[FunctionSpec]) -> RouteTable:
        return cls(route for function in functions for route in function.http_events)

    def match(self, method: str, path: str) -> RouteMatch | None:
        for route in self.routes:
            if route.method in ("ANY", method.upper()) and (parameters := route.match_path(path)) is not None:
                return RouteMatch(route, parameters)
        return None

    def allowed_methods(self, path: str) -> list[str]:
        """The methods some route serves `path` with (a 405's `Allow`)."""
        routes = (route for route in self.routes if route.path != "$default")
        return sorted({route.method for route in routes if route.match_path(path) is not None})

    def api_for_path(self, path: str) -> str | None:
        """The API whose routes cover `path` with any method (to answer a CORS preflight)."""
        return next((r.api for r in self.routes if r.match_path(path) is not None), None)


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
        if (key := name.lower()) == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        else:
            joined[key] = f"{joined[key]},{value}" if key in joined else value
    joined.setdefault("x-forwarded-for", source_ip)
    joined.setdefault("x-forwarded-port", str(server_port))
    joined.setdefault("x-forwarded-proto", "http")
    joined.setdefault("x-amzn-trace-id", f"Root=1-{int(now.timestamp()):08x}-{uuid.uuid4().hex[:24]}")
    domain = joined["host"].rsplit(":", 1)[0] if joined.get("host") else "localhost"
    event: dict[str, Any] = {"version": "2.0", "routeKey": route_key, "rawPath": raw_path}
    event["rawQueryString"] = raw_query
    if cookies:
        event["cookies"] = cookies
    event["headers"] = joined
    if raw_query:
        parameters: dict[str, str] = {}
        for key, value in parse_qsl(raw_query, keep_blank_values=True):
            parameters[key] = f"{parameters[key]},{value}" if key in parameters else value
        event["queryStringParameters"] = parameters
    http = {"method": method.upper(), "path": raw_path, "protocol": protocol, "sourceIp": source_ip}
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0],
        "http": http | {"userAgent": joined.get("user-agent", "")},
        "requestId": request_id or base64.b64encode(os.urandom(10)).decode(),
        "routeKey": route_key,
        "stage": "$default",
        "time": api_gateway_time(now),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    media_type = (joined.get("content-type") or "text/plain").split(";", 1)[0].strip().lower()
    text: str | None = None
    if media_type.startswith("text/") or media_type.endswith(("+json", "+xml")) or media_type in _TEXT_TYPES:
        with contextlib.suppress(UnicodeDecodeError):
            text = body.decode("utf-8")
    if body:
        event["body"] = base64.b64encode(body).decode() if text is None else text
    event["isBase64Encoded"] = bool(body) and text is None
    return event


class MalformedResponseError(ValueError):
    """The handler's return value is not something API Gateway can turn into an HTTP response."""


def _header_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str | int | float):
        raise MalformedResponseError(f"header {name!r} has a non-scalar value {value!r}")
    return str(value)


def response_from_result(result: Any) -> Response:
    """Read a Lambda result the way API Gateway payload format 2.0 does."""
    try:
        serialised = json.dumps(result).encode()  # what actually leaves Lambda: JSON
    except (TypeError, ValueError) as e:
        raise MalformedResponseError(f"the handler returned a value Lambda cannot serialise: {e}") from e
    if len(serialised) > MAX_LAMBDA_RESPONSE_BYTES:
        raise MalformedResponseError(f"the response is {len(serialised)} bytes; Lambda refuses over 6 MB")
    if isinstance(result := json.loads(serialised), str):
        return Response(result.encode(), 200, media_type="application/json")
    if not isinstance(result, dict) or "statusCode" not in result:
        return Response(serialised, 200, media_type="application/json")
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedResponseError(f"statusCode must be an HTTP status number, got {status!r}")
    headers = [(str(name), _header_value(name, v)) for name, v in (result.get("headers") or {}).items()]
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise MalformedResponseError(f"multiValueHeaders[{name!r}] must be a list")
        headers += [(str(name), _header_value(name, v)) for v in values]
    if not isinstance(cookies := result.get("cookies") or [], list):
        raise MalformedResponseError("cookies must be a list of Set-Cookie values")
    headers += [("set-cookie", str(c)) for c in cookies]
    if (body := result.get("body")) is not None and not isinstance(body, str):
        raise MalformedResponseError(f"body must be a string, got {type(body).__name__}")
    try:
        payload = (body or "").encode()
        payload = base64.b64decode(payload, validate=True) if result.get("isBase64Encoded") else payload
    except ValueError as e:
        raise MalformedResponseError("isBase64Encoded is true but body is not base64") from e
    response = Response(payload, status)
    for name, value in headers:
        if name.lower() not in _HOP_BY_HOP:
            response.headers.append(name, value)
    return response


# By hand, not Starlette's CORSMiddleware: API Gateway answers preflights 204 (without CORS headers for an
# origin it refuses), echoes the configured lists as they are, and replaces the integration's CORS headers.


def _origin_allowed(cors: CorsConfig, origin: str) -> bool:
    return any(allowed == "*" or fnmatch.fnmatchcase(origin, allowed) for allowed in cors.allow_origins)


def _allow_origin_value(cors: CorsConfig, origin: str) -> str:
    return "*" if "*" in cors.allow_origins and not cors.allow_credentials else origin


def preflight_response(cors: CorsConfig, origin: str) -> Response:
    response = Response(status_code=204)
    if _origin_allowed(cors, origin):
        headers = {
            "access-control-allow-origin": _allow_origin_value(cors, origin),
            "access-control-allow-methods": ",".join(cors.allow_methods),
            "access-control-allow-headers": ",".join(cors.allow_headers),
            "access-control-max-age": "" if cors.max_age is None else str(cors.max_age),
            "access-control-allow-credentials": "true" if cors.allow_credentials else "",
        }
        response.headers.update({name: value for name, value in headers.items() if value})
    return response


def apply_cors(response: Response, cors: CorsConfig, origin: str | None) -> None:
    """With CORS configured, API Gateway ignores the integration's CORS headers and sets its own."""
    for name in {k for k in response.headers if k.startswith("access-control-")}:
        del response.headers[name]
    if origin is None or not _origin_allowed(cors, origin):
        return
    if (value := _allow_origin_value(cors, origin)) != "*":
        response.headers.append("vary", "origin")
    response.headers["access-control-allow-origin"] = value
    if cors.expose_headers:
        response.headers["access-control-expose-headers"] = ",".join(cors.expose_headers)
    if cors.allow_credentials:
        response.headers["access-control-allow-credentials"] = "true"


class HttpApi(BaseRoute):
    """The template's HTTP APIs in front of the real handlers, as one Starlette route: a full match for their
    routes (and CORS preflights), a partial one for anything else, so that a later route which fully matches
    (static files, say) wins and the API answers the rest (404, 405)."""

    def __init__(
        self,
        routes: RouteTable,
        functions: Mapping[str, LocalFunction],
        cors: Mapping[str, CorsConfig | None] | None = None,
        *,
        account_id: str = DEFAULT_ACCOUNT_ID,
        max_body_bytes: int = MAX_REQUEST_BODY_BYTES,
    ) -> None:
        self.routes, self.functions, self.account_id = routes, functions, account_id
        self.max_body_bytes, self.cors = max_body_bytes, dict(cors or {})
        if missing := {r.function for r in routes.routes} - set(functions):
            raise ValueError(f"routes point at functions that are not loaded: {sorted(missing)}")

    def _cors_for(self, path: str, api: str | None = None) -> CorsConfig | None:
        if (api := api or self.routes.api_for_path(path)) in self.cors:
            return self.cors[api]
        configured = [cors for cors in self.cors.values() if cors is not None]
        return configured[0] if len(configured) == 1 else None

    def _preflight_cors(self, request: Request) -> CorsConfig | None:
        headers = {"origin", "access-control-request-method"}
        wanted = request.method == "OPTIONS" and headers <= set(request.headers.keys())
        return self._cors_for(_raw_path(request.scope)) if wanted else None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        served = self.routes.match(scope["method"], _raw_path(scope)) is not None
        return (Match.FULL if served or self._preflight_cors(Request(scope)) else Match.PARTIAL), {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started, request = time.monotonic(), Request(scope, receive)
        request_id = base64.b64encode(os.urandom(10)).decode()
        response = await self._respond(request, request_id)
        response.headers["apigw-requestid"] = request_id
        await response(scope, receive, send)
        extra = {"method": request.method, "path": scope["path"], "status": response.status_code}
        logger.info("http request", extra=extra | {"duration_ms": round((time.monotonic() - started) * 1000)})

    async def _respond(self, request: Request, request_id: str) -> Response:
        path, origin = _raw_path(request.scope), request.headers.get("origin")
        if not path.startswith("/"):  # `OPTIONS *`, an absolute-form target: not an HTTP API request
            return error_response(400)
        if (cors := self._preflight_cors(request)) is not None and origin is not None:
            return preflight_response(cors, origin)
        if (match := self.routes.match(request.method, path)) is None:
            allowed = ", ".join(self.routes.allowed_methods(path))
            response: Response = error_response(405, {"allow": allowed}) if allowed else error_response(404)
        else:
            response = await self._invoke(request, match, request_id)
        if (cors := self._cors_for(path, match.route.api if match else None)) is not None:
            apply_cors(response, cors, origin)
        return response

    async def _read_body(self, request: Request) -> bytes | None:
        """The request body, or None when it exceeds the limit (the caller answers 413)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks: list[bytes] = []
        async for chunk in request.stream():
            chunks.append(chunk)
            if sum(map(len, chunks)) > self.max_body_bytes:
                return None
        return b"".join(chunks)

    async def _invoke(self, request: Request, match: RouteMatch, request_id: str) -> Response:
        try:
            body = await self._read_body(request)
        except ClientDisconnect:
            return error_response(400)
        if body is None:
            return error_response(413, {"connection": "close"})
        scope, route = request.scope, match.route
        event = build_event(
            method=request.method,
            raw_path=_raw_path(scope),
            raw_query=scope["query_string"].decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            body=body,
            route_key=route.route_key,
            path_parameters=match.path_parameters,
            source_ip=(scope.get("client") or ("127.0.0.1", 0))[0],
            server_port=int((scope.get("server") or ("", 3000))[1] or 0),
            account_id=self.account_id,
            protocol=f"HTTP/{scope.get('http_version', '1.1')}",
            request_id=request_id,
        )
        where = {"function": route.function, "route": route.route_key}
        try:
            result = await run_in_threadpool(self.functions[route.function].invoke, event)
        except Exception:
            # API Gateway answers 500 when the function fails; the traceback is the developer's clue.
            logger.exception("http handler raised", extra=where)
            return error_response(500)
        try:
            return response_from_result(result)
        except MalformedResponseError as e:
            logger.error("malformed Lambda response: a 500", extra=where | {"error": str(e)})
            return error_response(500)


def _raw_path(scope: Scope) -> str:
    raw: bytes | None = scope.get("raw_path")
    return raw.decode("latin-1") if raw else str(scope["path"])


async def _error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (404 when no route matches) and a failure of the gateway itself, as JSON."""
    if isinstance(exc, HTTPException):
        return error_response(exc.status_code, exc.headers)
    logger.error("the gateway failed", exc_info=exc, extra={"path": request.url.path})
    return error_response(500)


def gateway_app(routes: Sequence[BaseRoute]) -> Starlette:
    """The gateway's ASGI app over `routes` (the HTTP APIs; later the WebSocket API and the web UI)."""
    handlers = {HTTPException: _error, Exception: _error}
    app = Starlette(routes=list(routes), exception_handlers=handlers)
    app.router.redirect_slashes = False  # a trailing slash is another path, as in API Gateway
    return app


class _JsonErrorsH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, answering a request it cannot parse with API Gateway's JSON 400, not text."""

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"message": _REASONS[400]}).encode()
        headers = {
            "content-type": "application/json",
            "content-length": str(len(body)),
            "connection": "close",
        }
        for event in (h11.Response(status_code=400, headers=list(headers.items())), h11.Data(data=body)):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.write(self.conn.send(h11.EndOfMessage()) or b"")
        self.transport.close()


class _DenyingWebSocketsProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets protocol, counting an HTTP answer to the handshake (a refused `$connect`: 401, 403)
    as the end of the handshake; uvicorn would log "returned without completing handshake" for each."""

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.http.response.body" and not message.get("more_body", False):
            self.handshake_complete = True


class GatewayServer:
    """uvicorn serving an ASGI app in a thread. `bind()` takes the port first (0: any free one), so a busy
    port fails early, in the caller, naming the variable that moves it."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 3000, port_env: str = "PHOTOPIPE_PORT"
    ) -> None:
        self.host, self.requested_port, self.port_env, self.port = host, port, port_env, 0
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def bind(self) -> None:
        self._socket = socket.socket()
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((self.host, self.requested_port))
        except OSError as e:
            self.stop()
            message = f"cannot listen on {self.host}:{self.requested_port} for the HTTP API: {e.strerror}"
            raise OSError(e.errno, f"{message} (set {self.port_env})") from e
        self.port = self._socket.getsockname()[1]

    def start(self, app: Any, timeout: float = 10.0) -> None:
        if self._socket is None:
            self.bind()
        # The local stack's own logging (HttpApi logs each request), not uvicorn's.
        protocols: dict[str, Any] = {"http": _JsonErrorsH11Protocol, "ws": _DenyingWebSocketsProtocol}
        config = uvicorn.Config(app, **protocols, log_config=None, access_log=False)
        config.timeout_graceful_shutdown, config.server_header = 5, False
        server = self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, args=([self._socket],), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start on {self.url}")
            time.sleep(0.01)
        logger.info("gateway listening", extra={"url": self.url})

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        if self._socket is not None:
            self._socket.close()
        self._server, self._thread, self._socket = None, None, None
