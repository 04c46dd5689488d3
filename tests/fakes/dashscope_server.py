"""A fake DashScope on loopback that speaks the real wire format, for the real SDK to talk to.

Two endpoints:
- `POST /api/v1/services/aigc/multimodal-generation/generation` (DashScope native, what
  `dashscope.MultiModalConversation.call` sends): errors as `{"request_id", "code", "message"}`;
- `POST /compatible-mode/v1/chat/completions` (OpenAI format): errors as `{"error": {...}}`.

Every request is recorded (path, headers, parsed body, the decoded image, what was answered), unknown
paths included, so a test can count LLM calls and see anything extra the SDK hits. Answers come from a
queue of scripted responses, then from `responder(image_bytes) -> answer text`.

    with FakeDashScope() as fake:
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", fake.base_url)
        fake.fail_next(1)                       # one 429 Throttling.RateQuota
        fake.answer_next('{"category": ...}')   # then this text
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

DEFAULT_API_KEY = "sk-fake-0123456789abcdef"
DEFAULT_ANSWER = '{"category": "other", "confidence": 0.5, "reason": "The fake server always says other."}'
NATIVE_PATH = "/api/v1/services/aigc/multimodal-generation/generation"
COMPATIBLE_PATH = "/compatible-mode/v1/chat/completions"

Api = Literal["dashscope", "openai", "unknown"]

# DashScope's error codes and what its OpenAI-compatible mode says instead: (code, type).
_OPENAI_ERRORS = {
    "InvalidApiKey": ("invalid_api_key", "invalid_request_error"),
    "Throttling.RateQuota": ("limit_requests", "requests"),
    "Throttling": ("limit_requests", "requests"),
    "InternalError": ("internal_error", "internal_error"),
    "InvalidParameter": ("invalid_parameter_error", "invalid_request_error"),
    "DataInspectionFailed": ("data_inspection_failed", "data_inspection_failed"),
}
_MESSAGES = {
    400: ("InvalidParameter", "The request is invalid."),
    401: ("InvalidApiKey", "Invalid API-key provided."),
    429: ("Throttling.RateQuota", "Requests rate limit exceeded, please try again later."),
    500: (
        "InternalError",
        "An internal error has occured, please try again later or contact service support.",
    ),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
}


@dataclass(frozen=True)
class ReportedUsage:
    input_tokens: int
    output_tokens: int
    image_tokens: int


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: Any  # parsed JSON (None if it was not JSON)
    status: int  # what the fake answered (0: it hung up)
    usage: ReportedUsage | None  # the tokens it reported (successful answers only)

    @property
    def api(self) -> Api:
        if self.path == NATIVE_PATH:
            return "dashscope"
        if self.path == COMPATIBLE_PATH:
            return "openai"
        return "unknown"

    @property
    def api_key(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    @property
    def image_url(self) -> str | None:
        for part in self._parts():
            if "image" in part:
                return str(part["image"])
            if part.get("type") == "image_url":
                return str(part["image_url"]["url"])
        return None

    @property
    def image(self) -> bytes | None:
        url = self.image_url
        return _decode_data_uri(url) if url else None

    @property
    def prompt(self) -> str:
        return "".join(
            str(part["text"])
            for part in self._parts()
            if "text" in part and part.get("type", "text") == "text"
        )

    def _parts(self) -> list[dict[str, Any]]:
        try:
            messages = self.body["input"]["messages"] if self.api == "dashscope" else self.body["messages"]
            content = messages[-1]["content"]
        except (KeyError, IndexError, TypeError):
            return []
        return [p for p in content if isinstance(p, dict)] if isinstance(content, list) else []


@dataclass(frozen=True)
class _Scripted:
    status: int
    body: Any = None  # sent as is (JSON-encoded unless bytes)
    answer: str | None = None  # a success, rendered in the endpoint's format
    error: tuple[str, str] | None = None  # (code, message), rendered in the endpoint's format
    delay: float = 0.0
    headers: Mapping[str, str] = field(default_factory=dict)


class FakeDashScope:
    """A `ThreadingHTTPServer` on 127.0.0.1 (a free port) in a daemon thread; a context manager."""

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        responder: Callable[[bytes], str] | None = None,
        delay: float = 0.0,
        image_tokens: int = 258,
    ) -> None:
        self.expected_api_key = api_key  # requests with another Bearer key get the real 401
        self.responder: Callable[[bytes], str] = responder or (lambda _image: DEFAULT_ANSWER)
        self.delay = delay  # seconds before every answer (to test timeouts)
        self.image_tokens = image_tokens
        self._lock = threading.Lock()
        self._queue: deque[_Scripted] = deque()
        self._requests: list[ReceivedRequest] = []
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeDashScope:
        handler = type("Handler", (_Handler,), {"fake": self})
        server = ThreadingHTTPServer(("127.0.0.1", self._port or 0), handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self._port = server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-dashscope", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: later calls get `connection refused` (the port stays the same)."""
        self._stopping.set()  # wakes up delayed answers
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeDashScope:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def origin(self) -> str:
        assert self._port is not None, "start the fake first"
        return f"http://127.0.0.1:{self._port}"

    @property
    def base_url(self) -> str:
        """For `DASHSCOPE_HTTP_BASE_URL`."""
        return f"{self.origin}/api/v1"

    @property
    def compatible_base_url(self) -> str:
        """For an OpenAI-compatible client's base URL."""
        return f"{self.origin}/compatible-mode/v1"

    # ------------------------------------------------------------------ scripting
    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def llm_requests(self) -> list[ReceivedRequest]:
        """Requests to either model endpoint (what a provider would be billed for, errors included)."""
        return [r for r in self.requests if r.api != "unknown"]

    @property
    def images(self) -> list[bytes]:
        """The photos the model endpoints received, in order."""
        return [image for r in self.llm_requests if (image := r.image) is not None]

    @property
    def failed_requests(self) -> int:
        """Model requests answered with an error (or not answered)."""
        return sum(1 for r in self.llm_requests if r.status != 200)

    @property
    def usage_sent(self) -> ReportedUsage:
        """The tokens the fake reported in all its successful answers."""
        usages = [r.usage for r in self.llm_requests if r.usage is not None]
        return ReportedUsage(
            input_tokens=sum(u.input_tokens for u in usages),
            output_tokens=sum(u.output_tokens for u in usages),
            image_tokens=sum(u.image_tokens for u in usages),
        )

    def enqueue(
        self, status: int, body: Any, *, delay: float = 0.0, headers: Mapping[str, str] | None = None
    ) -> None:
        """Answer the next request with exactly this status and body (a dict/list is JSON-encoded)."""
        with self._lock:
            self._queue.append(_Scripted(status=status, body=body, delay=delay, headers=dict(headers or {})))

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 429,
        code: str | None = None,
        message: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """The next `n` requests fail like the real service (default: 429 Throttling.RateQuota)."""
        default_code, default_message = _MESSAGES.get(status, ("InternalError", "Error."))
        error = (code or default_code, message or default_message)
        with self._lock:
            self._queue.extend(_Scripted(status=status, error=error, delay=delay) for _ in range(n))

    def answer_next(self, text: str, *, delay: float = 0.0) -> None:
        """The next request succeeds with this answer text."""
        with self._lock:
            self._queue.append(_Scripted(status=200, answer=text, delay=delay))

    def clear_script(self) -> None:
        """Forget the scripted responses not used yet (the responder answers from now on)."""
        with self._lock:
            self._queue.clear()

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self._requests.clear()

    # ------------------------------------------------------------------ internals
    def _next(self) -> _Scripted | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeDashScope
    protocol_version = "HTTP/1.1"
    server_version = "fake-dashscope"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # e.g. the SDK's upload-policy request: never expected
        self._reply_raw(404, {"code": "NotFound", "message": f"no such path {self.path}"}, body=None)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        api: Api = (
            "dashscope"
            if self.path == NATIVE_PATH
            else "openai"
            if self.path == COMPATIBLE_PATH
            else "unknown"
        )
        if api == "unknown":
            self._reply_raw(404, {"code": "NotFound", "message": f"no such path {self.path}"}, body=body)
            return

        request = ReceivedRequest("POST", self.path, self._headers(), body, 0, None)
        self.fake._wait(self.fake.delay)
        if request.api_key != self.fake.expected_api_key:
            message = "Invalid API-key provided." if request.api_key else "No API-key provided."
            self._error(api, request, 401, "InvalidApiKey", message)
            return
        scripted = self.fake._next()
        if scripted is not None:
            self.fake._wait(scripted.delay)
        if self.fake._stopping.is_set():  # hang up, as a server going away does
            self.fake._record(request)
            self.close_connection = True
            return
        if scripted is not None and scripted.answer is None and scripted.error is None:
            self._reply_raw(scripted.status, scripted.body, body=body, headers=scripted.headers)
            return
        if scripted is not None and scripted.error is not None:
            self._error(api, request, scripted.status, *scripted.error)
            return

        problem = _check(api, body)
        if problem:
            self._error(api, request, 400, "InvalidParameter", problem)
            return
        image = request.image
        assert image is not None  # _check made sure
        text = (
            scripted.answer
            if scripted is not None and scripted.answer is not None
            else self.fake.responder(image)
        )
        usage = ReportedUsage(
            input_tokens=self.fake.image_tokens + max(1, len(request.prompt) // 4),
            output_tokens=max(1, len(text) // 4),
            image_tokens=self.fake.image_tokens,
        )
        self.fake._record(_with(request, status=200, usage=usage))
        self._send(200, _success(api, body, text, usage))

    # ------------------------------------------------------------------ replies
    def _error(self, api: Api, request: ReceivedRequest, status: int, code: str, message: str) -> None:
        self.fake._record(_with(request, status=status, usage=None))
        request_id = str(uuid.uuid4())
        if api == "openai":
            openai_code, kind = _OPENAI_ERRORS.get(code, (code, "invalid_request_error"))
            payload: dict[str, Any] = {
                "error": {"message": message, "type": kind, "param": None, "code": openai_code},
                "request_id": request_id,
            }
        else:
            payload = {"request_id": request_id, "code": code, "message": message}
        self._send(status, payload, request_id=request_id)

    def _reply_raw(
        self, status: int, payload: Any, *, body: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        self.fake._record(ReceivedRequest(self.command, self.path, self._headers(), body, status, None))
        self._send(status, payload, headers=headers)

    def _send(
        self,
        status: int,
        payload: Any,
        *,
        request_id: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload, ensure_ascii=False).encode()
        fields = {
            "Content-Type": "application/json",
            "x-request-id": request_id or str(uuid.uuid4()),
            **(headers or {}),
            "Content-Length": str(len(data)),
            "Connection": "close",  # no pooled connections to a stopped fake
        }
        self.send_response(status)
        for name, value in fields.items():
            self.send_header(name, value)
        self.close_connection = True
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting (a timeout test)
            pass

    def _headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in self.headers.items()}


def _with(request: ReceivedRequest, *, status: int, usage: ReportedUsage | None) -> ReceivedRequest:
    return ReceivedRequest(request.method, request.path, request.headers, request.body, status, usage)


def _success(api: Api, body: Any, text: str, usage: ReportedUsage) -> dict[str, Any]:
    if api == "openai":
        return {
            "id": f"chatcmpl-{uuid.uuid4()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": usage.input_tokens,
                "completion_tokens": usage.output_tokens,
                "total_tokens": usage.input_tokens + usage.output_tokens,
                "prompt_tokens_details": {"image_tokens": usage.image_tokens},
            },
            "system_fingerprint": None,
        }
    return {
        "output": {
            "choices": [
                {"finish_reason": "stop", "message": {"role": "assistant", "content": [{"text": text}]}}
            ]
        },
        "usage": {
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "image_tokens": usage.image_tokens,
        },
        "request_id": str(uuid.uuid4()),
    }


def _check(api: Api, body: Any) -> str | None:
    """What the real service would refuse with 400 InvalidParameter (roughly)."""
    if not isinstance(body, dict):
        return "The request body is not valid JSON."
    if not body.get("model"):
        return "Model not specified."
    request = ReceivedRequest(
        "POST", NATIVE_PATH if api == "dashscope" else COMPATIBLE_PATH, {}, body, 0, None
    )
    url = request.image_url
    if url is None:
        return "The message has no image."
    if not url.startswith("data:image/"):
        return f"The image is not a data URI: {url[:40]!r}"
    if _decode_data_uri(url) is None:
        return "The image data URI is not valid base64."
    if not request.prompt:
        return "The message has no text."
    return None


def _decode_data_uri(url: str) -> bytes | None:
    header, sep, data = url.partition(",")
    if not sep or not header.startswith("data:") or not header.endswith(";base64"):
        return None
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None
