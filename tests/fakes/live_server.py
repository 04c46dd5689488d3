"""A fake photopipe live-updates server on loopback: the WebSocket protocol the CLI speaks, and the two
HTTP routes it reads around it (`GET /api/v1/info`, `/profile`, `/images/{id}`), on one port.

    with FakeLiveServer(token="good") as fake:
        fake.wait_for_connections(1)
        fake.send({"type": "image.updated", "image_id": "i1", "state": "processing", "at": "..."})
        fake.drop()                      # every open connection closes (the client reconnects)
        fake.heartbeats                  # application pings received

`announce=False` makes `/api/v1/info` omit `websocket_url` (the client then tries `/ws` itself);
`websocket=False` answers `/ws` with 404, like a server without live updates."""

from __future__ import annotations

import json
import threading
import time
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve


class FakeLiveServer:
    def __init__(self, *, token: str = "good", announce: bool = True, websocket: bool = True) -> None:  # noqa: S107
        self.token = token
        self.announce = announce
        self.websocket = websocket
        self.records: dict[str, dict[str, Any]] = {}  # served at GET /api/v1/images/{id}
        self.unavailable = 0  # answer this many handshakes with 503 (a server being redeployed)
        self.heartbeats: list[str] = []
        self.tokens_seen: list[str] = []
        self._open: list[ServerConnection] = []
        self._accepted = 0
        self._lock = threading.Lock()
        self._server: Server = serve(self._handle, "127.0.0.1", 0, process_request=self._http)
        self.port = self._server.socket.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> FakeLiveServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=5)

    # ------------------------------------------------------------------------------------- HTTP
    def _json(self, status: int, body: Any) -> Response:
        data = json.dumps(body).encode()
        headers = Headers(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Connection", "close"),
            ]
        )
        return Response(status, HTTPStatus(status).phrase, headers, data)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == "/api/v1/info":
            info: dict[str, Any] = {"name": "photopipe", "limits": {"max_upload_bytes": 52428800}}
            if self.announce:
                info["websocket_url"] = self.ws_url
            return self._json(200, info)
        if url.path == "/api/v1/profile":
            return self._json(200, {"user": {"user_id": "u1", "username": "ada", "email": "ada@example.com"}})
        if url.path.startswith("/api/v1/images/"):
            record = self.records.get(url.path.rsplit("/", 1)[-1])
            if record is None:
                return self._json(404, {"error": {"code": "image_not_found", "message": "no such image"}})
            return self._json(200, record)
        if url.path != "/ws" or not self.websocket:
            return connection.respond(HTTPStatus.NOT_FOUND, "no such route\n")
        if self.unavailable > 0:
            self.unavailable -= 1
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "try again later\n")
        token = parse_qs(url.query).get("token", [""])[0]
        self.tokens_seen.append(token)
        if token != self.token:
            return connection.respond(HTTPStatus.UNAUTHORIZED, "Unauthorized\n")
        return None

    # -------------------------------------------------------------------------------- WebSocket
    def _handle(self, connection: ServerConnection) -> None:
        with self._lock:
            self._open.append(connection)
            self._accepted += 1
        try:
            for message in connection:
                self.heartbeats.append(str(message))
        except Exception:  # noqa: S110 - a dropped connection ends the handler, as a real server's would
            pass
        finally:
            with self._lock:
                if connection in self._open:
                    self._open.remove(connection)

    @property
    def accepted(self) -> int:
        return self._accepted

    def wait_for_connections(self, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if self._accepted >= count and self._open:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"the client did not connect {count} time(s) within {timeout} s")
            time.sleep(0.02)

    def send(self, message: dict[str, Any] | str) -> None:
        text = message if isinstance(message, str) else json.dumps(message)
        with self._lock:
            connections = list(self._open)
        for connection in connections:
            connection.send(text)

    def drop(self) -> None:
        """Close every open connection, as API Gateway does after two hours."""
        with self._lock:
            connections = list(self._open)
            self._open.clear()
        for connection in connections:
            connection.close(code=1001, reason="going away")
