"""The template's WebSocket APIs on the local gateway, as API Gateway runs them.

`ws://HOST:PORT/{stage}`: the handshake becomes a REQUEST authorizer event for the real authorizer (a missing
identity source or an "Unauthorized" failure answers 401, a policy that does not allow `$connect` 403), then a
`$connect` event for the real handler (a non-2xx answer refuses the handshake), with a connection id; closing
becomes `$disconnect`. A message from the client is answered as API Gateway answers one no route takes
(`Forbidden`): the template routes none. Pings are answered (uvicorn's websockets protocol); a connection is
closed after API Gateway's 2 hours (1001, "Going away").

`/{stage}/@connections/{id}` is the management API (`POST` sends, `DELETE` closes, `GET` describes), where
boto3's `apigatewaymanagementapi` posts when its endpoint is the stage URL over HTTP: the template's
`${Api.ApiEndpoint}` resolves to this gateway (`point_at_gateway`). A connection that is not open answers
410 `GoneException`, as API Gateway does.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fnmatch
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from photopipe_local.gateway import api_gateway_time
from photopipe_local.runtime import LocalFunction
from photopipe_local.template import PhysicalRegistry, Template, TemplateError

logger = logging.getLogger("photopipe_local.websocket")

MAX_CONNECTION_SECONDS = 2 * 60 * 60  # API Gateway's limit on a connection's life
MAX_MESSAGE_BYTES = 128 * 1024  # API Gateway's message payload limit (@connections included)
SERVED_ROUTES = ("$connect", "$disconnect")


@dataclass(frozen=True)
class WebSocketApiSpec:
    logical_id: str
    api_id: str  # what Ref gives (the methodArn's API id)
    stage: str
    routes: Mapping[str, str]  # route key -> function logical id
    authorizer: str | None = None  # the $connect authorizer's function logical id
    identity_sources: tuple[str, ...] = ()  # route.request.querystring.token, route.request.header.X


def _function_from_uri(uri: str, by_arn: Mapping[str, str], where: str) -> str:
    """A Lambda integration's or authorizer's function (its URI names the function's ARN)."""
    if (function := by_arn.get(uri.partition("/functions/")[2].removesuffix("/invocations"))) is None:
        raise TemplateError(f"{where}: only functions of this template are invoked locally, not {uri!r}")
    return function


def websocket_apis(template: Template, physical: PhysicalRegistry) -> list[WebSocketApiSpec]:
    """The WebSocket APIs the template declares, with their routes, authorizer and stage."""
    functions = template.active_resources("AWS::Lambda::Function")
    by_arn = {physical[lid].attributes["Arn"]: lid for lid, _ in functions}

    def resolved(kind: str) -> dict[str, dict[str, Any]]:
        return {lid: template.properties(lid, physical) for lid, _ in template.active_resources(kind)}

    apis = [
        lid
        for lid, resource in template.active_resources("AWS::ApiGatewayV2::Api")
        if (resource.get("Properties") or {}).get("ProtocolType") == "WEBSOCKET"
    ]
    api_by_ref = {physical[lid].ref: lid for lid in apis}
    integrations: dict[str | None, str] = {}
    for lid, props in resolved("AWS::ApiGatewayV2::Integration").items():
        if props.get("IntegrationType") != "AWS_PROXY":
            raise TemplateError(f"{lid}: only Lambda proxy (AWS_PROXY) integrations run locally")
        integrations[physical[lid].ref] = _function_from_uri(str(props.get("IntegrationUri")), by_arn, lid)
    authorizers: dict[str | None, tuple[str, tuple[str, ...]]] = {}
    for lid, props in resolved("AWS::ApiGatewayV2::Authorizer").items():
        if props.get("AuthorizerType") != "REQUEST":
            raise TemplateError(f"{lid}: only Lambda REQUEST authorizers run locally")
        function = _function_from_uri(str(props.get("AuthorizerUri")), by_arn, lid)
        authorizers[physical[lid].ref] = (function, tuple(props.get("IdentitySource") or ()))
    routes: dict[str, dict[str, str]] = {lid: {} for lid in apis}
    authorizer: dict[str, tuple[str, tuple[str, ...]]] = {}
    for lid, props in resolved("AWS::ApiGatewayV2::Route").items():
        if (api := api_by_ref.get(props.get("ApiId"))) is None:
            raise TemplateError(
                f"{lid}: routes are served for WebSocket APIs only (HTTP APIs: HttpApi events)"
            )
        if (key := props.get("RouteKey")) not in SERVED_ROUTES:
            raise TemplateError(
                f"{lid}: route {key!r} is not served locally (only {', '.join(SERVED_ROUTES)})"
            )
        target = str(props.get("Target", ""))
        if (integrated := integrations.get(target.removeprefix("integrations/"))) is None:
            raise TemplateError(f"{lid}: Target {target!r} is not an integration of this template")
        routes[api][key] = integrated
        if props.get("AuthorizationType") == "CUSTOM":
            authorizer[api] = authorizers[props.get("AuthorizerId")]
    stages = {p.get("ApiId"): str(p["StageName"]) for p in resolved("AWS::ApiGatewayV2::Stage").values()}
    specs = []
    for lid in apis:
        if (stage := stages.get(physical[lid].ref)) is None:
            raise TemplateError(f"{lid}: a WebSocket API needs an AWS::ApiGatewayV2::Stage to be served")
        checker, sources = authorizer.get(lid, (None, ()))
        specs.append(WebSocketApiSpec(lid, str(physical[lid].ref), stage, routes[lid], checker, sources))
    return specs


def point_at_gateway(template: Template, physical: PhysicalRegistry, gateway_url: str) -> None:
    """Make `Fn::GetAtt Api.ApiEndpoint` of every WebSocket API the gateway's ws:// URL."""
    for lid, resource in template.active_resources("AWS::ApiGatewayV2::Api"):
        if (resource.get("Properties") or {}).get("ProtocolType") == "WEBSOCKET":
            physical.record(lid, ApiEndpoint="ws" + gateway_url.removeprefix("http"))


def _connection_id() -> str:
    """Shaped like API Gateway's (`L0SM9cOFvHcCIhw=`: 15 base64 characters and a `=`), URL-safe alphabet."""
    return base64.urlsafe_b64encode(os.urandom(11)).decode()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def _gone() -> Response:
    return JSONResponse({"message": None}, 410, headers={"x-amzn-ErrorType": "GoneException"})


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_allows(policy: Any, method_arn: str) -> bool:
    """Whether an authorizer's policy document allows `execute-api:Invoke` on `method_arn` (and denies it not)."""
    statements = _as_list((policy or {}).get("Statement") or []) if isinstance(policy, dict) else []

    def matching(effect: str) -> bool:
        return any(
            isinstance(st, dict)
            and st.get("Effect") == effect
            and any(fnmatch.fnmatchcase("execute-api:Invoke", a) for a in _as_list(st.get("Action")))
            and any(fnmatch.fnmatchcase(method_arn, r) for r in _as_list(st.get("Resource")))
            for st in statements
        )

    return matching("Allow") and not matching("Deny")


@dataclass
class _Connection:
    connection_id: str
    websocket: WebSocket
    connected_at: float
    source_ip: str
    user_agent: str
    authorizer: dict[str, Any]
    last_active: float = field(default_factory=time.time)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, data: bytes) -> None:
        async with self.lock:
            try:
                await self.websocket.send_text(data.decode())
            except UnicodeDecodeError:
                await self.websocket.send_bytes(data)
        self.last_active = time.time()

    async def close(self, code: int, reason: str = "") -> None:
        async with self.lock:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # already closing: nothing to do
                await self.websocket.close(code, reason)


class WebSocketGateway:
    """One WebSocket API served on the gateway: `routes()` are its Starlette routes."""

    def __init__(
        self,
        spec: WebSocketApiSpec,
        functions: Mapping[str, LocalFunction],
        *,
        account_id: str,
        region: str,
        max_connection_seconds: float = MAX_CONNECTION_SECONDS,
    ) -> None:
        wanted = {*spec.routes.values(), *([spec.authorizer] if spec.authorizer else [])}
        if missing := wanted - set(functions):
            raise ValueError(f"{spec.logical_id} routes to functions that are not loaded: {sorted(missing)}")
        self.spec, self.functions, self.account_id, self.region = spec, functions, account_id, region
        self.max_connection_seconds = max_connection_seconds
        self.connections: dict[str, _Connection] = {}

    @property
    def path(self) -> str:
        return f"/{self.spec.stage}"

    def routes(self) -> list[BaseRoute]:
        manage = Route(
            f"{self.path}/@connections/{{connection_id}}", self._manage, methods=["GET", "POST", "DELETE"]
        )
        return [WebSocketRoute(self.path, self._serve), manage]

    # ------------------------------------------------------------------------------ events

    def _request_context(
        self, route_key: str, connection_id: str, connected_at: float, **who: Any
    ) -> dict[str, Any]:
        """API Gateway's `requestContext` of a WebSocket event (`who`: source_ip, user_agent, domain)."""
        now, request_id = datetime.now(UTC), base64.b64encode(os.urandom(10)).decode()
        kinds = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}
        return {
            "routeKey": route_key,
            "eventType": kinds.get(route_key, "MESSAGE"),
            "extendedRequestId": request_id,
            "requestTime": api_gateway_time(now),
            "messageDirection": "IN",
            "stage": self.spec.stage,
            "connectedAt": int(connected_at * 1000),
            "requestTimeEpoch": int(now.timestamp() * 1000),
            "identity": {"sourceIp": who["source_ip"], "userAgent": who["user_agent"]},
            "requestId": request_id,
            "domainName": who["domain"],
            "connectionId": connection_id,
            "apiId": self.spec.api_id,
        }

    async def _invoke(self, function: str, event: dict[str, Any]) -> Any:
        return await run_in_threadpool(self.functions[function].invoke, event)

    async def _authorize(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(status, authorizer context): 200 when the connection may proceed."""
        if self.spec.authorizer is None:
            return 200, {}
        query, headers = event.get("queryStringParameters") or {}, event["headers"]  # headers: lower case
        for source in self.spec.identity_sources:  # route.request.querystring.token, route.request.header.X
            _, _, where, name = source.split(".", 3)
            if not (query.get(name) if where == "querystring" else headers.get(name.lower())):
                return 401, {}  # API Gateway answers without calling the function
        method_arn = f"arn:aws:execute-api:{self.region}:{self.account_id}:{self.spec.api_id}/{self.spec.stage}/$connect"
        authorizer_event = {"type": "REQUEST", "methodArn": method_arn, "stageVariables": {}} | event
        try:
            policy = await self._invoke(self.spec.authorizer, authorizer_event)
        except Exception as e:  # the authorizer failed: "Unauthorized" is its way of saying 401
            if str(e) == "Unauthorized":
                return 401, {}
            logger.exception("websocket authorizer raised", extra={"function": self.spec.authorizer})
            return 500, {}
        if not isinstance(policy, dict) or not policy.get("principalId"):
            return 403, {}
        if not policy_allows(policy.get("policyDocument"), method_arn):
            return 403, {}
        context = policy.get("context") or {}
        if not all(isinstance(v, str | int | float | bool) for v in context.values()):
            logger.error("authorizer context values must be strings, numbers or booleans: a 500")
            return 500, {}
        return 200, {"principalId": policy["principalId"], **context}

    # ------------------------------------------------------------------------------ the socket

    async def _serve(self, websocket: WebSocket) -> None:
        connection_id, connected_at = _connection_id(), time.time()
        headers: dict[str, str] = {}
        for key, value in websocket.headers.items():
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        multi_headers: dict[str, list[str]] = {}
        for key, value in websocket.headers.items():
            multi_headers.setdefault(key, []).append(value)
        query = parse_qsl(websocket.scope["query_string"].decode("latin-1"), keep_blank_values=True)
        source_ip = (websocket.client.host if websocket.client else None) or "127.0.0.1"
        user_agent, domain = headers.get("user-agent", ""), headers.get("host", "127.0.0.1").rsplit(":", 1)[0]
        who = {"source_ip": source_ip, "user_agent": user_agent, "domain": domain}
        event: dict[str, Any] = {"headers": headers, "multiValueHeaders": multi_headers}
        if query:
            event["queryStringParameters"] = dict(query)
            event["multiValueQueryStringParameters"] = {k: [v for n, v in query if n == k] for k, _ in query}
        event["requestContext"] = self._request_context("$connect", connection_id, connected_at, **who)
        status, authorizer = await self._authorize(event)
        if status == 200 and (function := self.spec.routes.get("$connect")) is not None:
            event["requestContext"]["authorizer"] = authorizer
            status = await self._connect(function, event | {"isBase64Encoded": False})
        extra = {"connection_id": connection_id, "status": status}  # never the query string: it has the token
        if not 200 <= status < 300:
            messages = {401: "Unauthorized", 403: "Forbidden", 500: "Internal server error"}
            await websocket.send_denial_response(
                JSONResponse({"message": messages.get(status, "Forbidden")}, status)
            )
            logger.info("websocket refused", extra=extra)
            return
        connection = _Connection(connection_id, websocket, connected_at, source_ip, user_agent, authorizer)
        await self._run(connection, who)

    async def _connect(self, function: str, event: dict[str, Any]) -> int:
        try:
            result = await self._invoke(function, event)
        except Exception:  # API Gateway refuses the handshake when $connect fails; the traceback is the clue
            logger.exception("websocket $connect handler raised", extra={"function": function})
            return 500
        status = result.get("statusCode") if isinstance(result, dict) else None
        return status if isinstance(status, int) and not isinstance(status, bool) else 502

    async def _run(self, connection: _Connection, who: dict[str, Any]) -> None:
        websocket, connection_id = connection.websocket, connection.connection_id
        expiry = asyncio.get_running_loop().call_later(
            self.max_connection_seconds, lambda: asyncio.ensure_future(connection.close(1001, "Going away"))
        )
        code, reason = 1006, ""
        self.connections[connection_id] = connection  # known before the client sees it open
        try:
            async with connection.lock:  # a post waits for the accept
                await websocket.accept()
            logger.info("websocket connected", extra={"connection_id": connection_id})
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    code, reason = int(message.get("code") or 1005), str(message.get("reason") or "")
                    break
                connection.last_active = time.time()
                request_id = base64.b64encode(os.urandom(10)).decode()
                answer = {"message": "Forbidden", "connectionId": connection_id, "requestId": request_id}
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await connection.send(json.dumps(answer).encode())
        except WebSocketDisconnect as e:
            code = e.code
        finally:
            expiry.cancel()
            self.connections.pop(connection_id, None)
            logger.info("websocket disconnected", extra={"connection_id": connection_id, "code": code})
        if (function := self.spec.routes.get("$disconnect")) is not None:
            context = self._request_context("$disconnect", connection_id, connection.connected_at, **who)
            context |= {
                "disconnectStatusCode": code,
                "disconnectReason": reason,
                "authorizer": connection.authorizer,
            }
            headers = {"Host": who["domain"], "x-api-key": "", "x-restapi": ""}
            event = {"headers": headers, "multiValueHeaders": {k: [v] for k, v in headers.items()}}
            try:  # best effort, as in API Gateway: a stale record is what the notify function cleans up
                await self._invoke(function, event | {"requestContext": context, "isBase64Encoded": False})
            except Exception:
                logger.exception("websocket $disconnect handler raised", extra={"function": function})

    # ------------------------------------------------------------------------------ @connections

    async def _manage(self, request: Request) -> Response:
        if (connection := self.connections.get(request.path_params["connection_id"])) is None:
            return _gone()
        if request.method == "DELETE":
            await connection.close(1000)
            return Response(status_code=204)
        if request.method == "GET":
            identity = {"sourceIp": connection.source_ip, "userAgent": connection.user_agent}
            connected, active = _iso(connection.connected_at), _iso(connection.last_active)
            return JSONResponse({"connectedAt": connected, "identity": identity, "lastActiveAt": active})
        if len(data := await request.body()) > MAX_MESSAGE_BYTES:
            headers = {"x-amzn-ErrorType": "PayloadTooLargeException"}
            return JSONResponse({"message": "Message too long"}, 413, headers=headers)
        try:
            await connection.send(data)
        except (RuntimeError, OSError, WebSocketDisconnect):  # closing under us: gone, as API Gateway says
            return _gone()
        return Response(status_code=200)


def websocket_gateways(
    specs: Iterable[WebSocketApiSpec], functions: Mapping[str, LocalFunction], *, account_id: str, region: str
) -> list[WebSocketGateway]:
    gateways = [WebSocketGateway(s, functions, account_id=account_id, region=region) for s in specs]
    if len({g.path for g in gateways}) != len(gateways):
        raise TemplateError(
            "two WebSocket APIs share a stage name: the local gateway serves each at /{stage}"
        )
    return gateways
