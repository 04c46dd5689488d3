"""Live updates over the server's WebSocket API: `upload --wait`, `enhance --wait` and `watch`.

Protocol (server → client, JSON text frames):
    {"type": "image.updated", "image_id": ..., "state": ..., "progress"?: ..., "at": ISO time, ...}
    {"type": "job.updated",   "job_id": ...,   "state": ..., "progress"?: ..., "at": ISO time, ...}
    {"type": "order.updated", "order_id": ..., "state": ..., "at": ISO time}   (`buy --wait`: types=ORDERS)
The client authenticates with `?token=JWT` on the URL, which `GET /api/v1/info` announces as
`websocket_url` (else `ws(s)://<api host>/ws` is tried; a server without live updates fails clearly).

The connection lives in a thread: websockets' own keepalive pings every 20 s notice a dead connection, a
`{"action": "ping"}` message every 5 minutes keeps API Gateway's 10-minute idle timeout away (it does
not count control frames), and a dropped connection is reopened with exponential backoff (websockets'
`reconnect`, 1 s doubling to 30 s). After a reconnect the consumer is told (`Reconnected`) so it can
catch up on what it may have missed; the client never polls."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

from photopipe_cli.errors import CliError, NotLoggedIn

if TYPE_CHECKING:
    from websockets.sync.client import ClientConnection

    from photopipe_cli.api import Api

HEARTBEAT_S = 300.0  # application-level ping: under API Gateway's 10-minute idle timeout
KEEPALIVE_PING_S = 20.0  # websockets' protocol pings, to notice a dead connection
OPEN_TIMEOUT_S = 10.0
RECONNECT_FIRST_S = 1.0
RECONNECT_MAX_S = 30.0
HEARTBEAT_MESSAGE = json.dumps({"action": "ping"})
PHOTOS_AND_JOBS = frozenset({"image.updated", "job.updated"})  # what upload, enhance and watch follow
ORDERS = frozenset({"order.updated", "credits.updated"})
NO_LIVE_UPDATES_HINT = (
    "--wait and watch need the server's WebSocket API. Without it, upload without --wait and check "
    "each photo with `photopipe show ID`."
)


@dataclass(frozen=True)
class Endpoint:
    url: str  # without the token
    announced: bool  # from GET /info's websocket_url (else the ws(s)://host/ws guess)


@dataclass(frozen=True)
class Lost:
    """The connection dropped; reconnecting."""

    reason: str


@dataclass(frozen=True)
class Reconnected:
    """A new connection is open: updates sent meanwhile may have been missed."""


@dataclass(frozen=True)
class Failed:
    """The connection cannot be reopened (e.g. the token was refused)."""

    error: CliError


Event = dict[str, Any] | Lost | Reconnected | Failed


def endpoint(api: Api) -> Endpoint:
    info = api.get("/info", auth=False) or {}
    announced = info.get("websocket_url") if isinstance(info, dict) else None
    if isinstance(announced, str) and announced:
        return Endpoint(announced, True)
    parts = urlsplit(api.server.url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    return Endpoint(urlunsplit((scheme, parts.netloc, "/ws", "", "")), False)


def with_token(url: str, token: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}token={quote(token, safe='')}"


def _status_of(error: BaseException) -> int | None:
    from websockets.exceptions import InvalidStatus

    return error.response.status_code if isinstance(error, InvalidStatus) else None


def _describe(error: BaseException) -> str:
    status = _status_of(error)
    if status is not None:
        return f"HTTP {status}"
    text = str(error) or type(error).__name__
    return "connection refused" if "Errno 111" in text or "refused" in text.lower() else text


class LiveUpdates:
    """One live-updates connection for this process: `open()`, then `next()` until done, then `close()`."""

    def __init__(
        self,
        where: Endpoint,
        token: str,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        keepalive_s: float | None = KEEPALIVE_PING_S,
        reconnect_first_s: float = RECONNECT_FIRST_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
        on_notice: Callable[[str], None] | None = None,
        types: frozenset[str] = PHOTOS_AND_JOBS,
    ) -> None:
        self.where = where
        self.types = types
        self._url = with_token(where.url, token)
        self._heartbeat_s = heartbeat_s
        self._keepalive_s = keepalive_s
        self._reconnect = (reconnect_first_s, reconnect_max_s)
        self._notice = on_notice or (lambda _text: None)
        self._events: queue.Queue[Event] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current: ClientConnection | None = None
        self.connections = 0  # how many times a connection was opened (1 + reconnects)

    def _options(self) -> dict[str, Any]:
        from photopipe_cli.api import _user_agent

        return {
            "open_timeout": OPEN_TIMEOUT_S,
            "ping_interval": self._keepalive_s,
            "ping_timeout": self._keepalive_s,
            "close_timeout": 2,
            "user_agent_header": _user_agent(),
            "proxy": None,
            "logger": logging.getLogger("photopipe_cli.live"),
        }

    # ------------------------------------------------------------------------------------ opening
    def open(self) -> LiveUpdates:
        """Connect now (failing with a clear message when the server has no live updates), then keep
        the connection in a background thread."""
        from websockets.exceptions import InvalidHandshake, InvalidURI
        from websockets.sync.client import connect

        try:
            first = connect(self._url, legacy=True, **self._options())  # a connection, kept by the thread
        except (InvalidHandshake, InvalidURI, OSError, TimeoutError) as e:
            raise self._first_failure(e) from None
        self.connections = 1
        self._thread = threading.Thread(target=self._run, args=(first,), name="live-updates", daemon=True)
        self._thread.start()
        return self

    def _first_failure(self, error: BaseException) -> CliError:
        status = _status_of(error)
        if status in (401, 403):
            return NotLoggedIn(
                f"the live-updates server refused your token (HTTP {status}): log in again",
                hint="Run `photopipe login`.",
            )
        if not self.where.announced:
            return CliError(
                "this server offers no live updates (GET /api/v1/info has no websocket_url, and "
                f"{self.where.url} answered: {_describe(error)})",
                hint=NO_LIVE_UPDATES_HINT,
            )
        return CliError(f"cannot connect to live updates at {self.where.url}: {_describe(error)}")

    def close(self) -> None:
        self._stop.set()
        current = self._current
        if current is not None:
            current.close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LiveUpdates:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- consuming
    def next(self, timeout: float) -> Event | None:
        """The next message or connection event, or None after `timeout` seconds without one."""
        try:
            return self._events.get(timeout=timeout)
        except queue.Empty:
            return None

    # ------------------------------------------------------------------------------------- thread
    def _run(self, first: ClientConnection) -> None:
        from websockets.sync.client import reconnect

        reason = self._pump(first)
        if self._stop.is_set():
            return
        self._lost(reason)
        try:
            for connection in reconnect(
                self._url,
                reconnect_delays=self._delays,
                process_exception=self._fatal_or_retry,
                **self._options(),
            ):
                if self._stop.is_set():
                    connection.close()
                    return
                self.connections += 1
                self._notice("live updates: reconnected")
                self._events.put(Reconnected())
                reason = self._pump(connection)
                if self._stop.is_set():
                    return
                self._lost(reason)
        except Exception as e:  # a fatal handshake failure: hand it to the consumer, do not die silently
            self._events.put(Failed(self._first_failure(e)))

    def _lost(self, reason: str) -> None:
        self._notice(f"live updates: connection lost ({reason}); reconnecting")
        self._events.put(Lost(reason))

    def _delays(self) -> Generator[float]:
        delay, most = self._reconnect
        while True:
            if self._stop.is_set():
                delay = 0.0
            self._notice(f"live updates: cannot reconnect yet; trying again in {delay:.2g} s")
            yield delay
            delay = min(most, delay * 2)

    @staticmethod
    def _fatal_or_retry(error: Exception) -> Exception | None:
        from websockets.client import process_exception

        if _status_of(error) in (401, 403):
            return error
        return process_exception(error)

    def _pump(self, connection: ClientConnection) -> str:
        """Read messages into the queue until the connection closes; returns why it closed."""
        from websockets.exceptions import ConnectionClosed

        self._current = connection
        last_sent = time.monotonic()
        try:
            while not self._stop.is_set():
                try:
                    raw = connection.recv(timeout=min(1.0, self._heartbeat_s))
                except TimeoutError:
                    if time.monotonic() - last_sent >= self._heartbeat_s:
                        connection.send(HEARTBEAT_MESSAGE)
                        last_sent = time.monotonic()
                    continue
                message = _parse(raw, self.types)
                if message is not None:
                    self._events.put(message)
        except ConnectionClosed as e:
            return f"closed ({e.rcvd.code})" if e.rcvd else "the connection dropped"
        except OSError as e:
            return str(e)
        finally:
            self._current = None
            connection.close()
        return "stopped"


def _parse(raw: str | bytes, types: frozenset[str] = PHOTOS_AND_JOBS) -> dict[str, Any] | None:
    """A notification of one of `types`, or None for anything else (other notifications, keepalive
    answers, API Gateway's own messages)."""
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    if isinstance(message, dict) and message.get("type") in types:
        return message
    return None
