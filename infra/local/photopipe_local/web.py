"""The web UI on the local gateway: the static files of `web/` at `/` (after the HTTP API, so `/api/...`
stays the API's) and a `/config.json` that tells the UI where everything is - what `make deploy-web` writes
into the web bucket in AWS. The answers carry the same security headers as the CloudFront distribution's
(the template's `WebSecurityHeaders`), with the local hosts in place of AWS's, so the browser tests run the
UI under the CSP it has in production."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

mimetypes.add_type("text/javascript", ".mjs")  # ES modules must be served as JavaScript

# The distribution's policy (template.yaml, WebSecurityHeaders) with {media} for the media endpoint: no
# inline script, no eval. tests/unit/local/test_local_web.py keeps the two in step.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: {media}; "
    "connect-src 'self' {media}; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "strict-origin-when-cross-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=(), payment=()",
    # Not content-hashed: the browser revalidates (ETag / Last-Modified), so a change shows at once.
    "cache-control": "no-cache",
}


class _WithHeaders:
    """ASGI middleware adding fixed headers to every HTTP answer of the wrapped app."""

    def __init__(self, app: ASGIApp, headers: dict[str, str]) -> None:
        self.app = app
        self.headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True)
class WebUi:
    directory: Path
    media_origin: str  # where presigned uploads and photo links point (moto, locally)

    @classmethod
    def beside(cls, root: Path, *, moto_endpoint: str) -> WebUi | None:
        """The UI in `<template dir>/web`, if it is there."""
        directory = root / "web"
        if not (directory / "index.html").is_file():
            return None
        parts = urlsplit(moto_endpoint)
        return cls(directory, f"{parts.scheme}://{parts.netloc}")

    @property
    def csp(self) -> str:
        return CSP.format(media=self.media_origin)

    def headers(self) -> dict[str, str]:
        return {"content-security-policy": self.csp, **SECURITY_HEADERS}

    def mount(self) -> Mount:
        """The UI's files at `/`, for every path the API does not own: a request under `/api/` that no API
        route takes (an undeclared method, say) is the HTTP API's to answer (405 + Allow, 404), not a file."""
        return _UiMount("/", app=self.static_files())

    def static_files(self) -> ASGIApp:
        return _WithHeaders(StaticFiles(directory=self.directory, html=True), self.headers())

    def config(self, *, wechat_sandbox: bool) -> dict[str, Any]:
        """Empty URLs mean "this origin": the API under /api/v1; the WebSocket as /api/v1/info says."""
        return {"api_url": "", "websocket_url": "", "stage": "local", "wechat_sandbox": wechat_sandbox}

    def config_route(self, *, wechat_sandbox: bool) -> Any:
        body, headers = self.config(wechat_sandbox=wechat_sandbox), self.headers()

        async def config_json(_: Request) -> JSONResponse:
            return JSONResponse(body, headers=headers)

        return config_json


class _UiMount(Mount):
    API_PREFIXES = ("/api/", "/webhook/", "/sandbox/", "/ws")

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and str(scope.get("path", "")).startswith(self.API_PREFIXES):
            return Match.NONE, {}
        return super().matches(scope)
