"""Vision-LLM providers: one photo and one prompt in, the model's text and token counts out.

Each provider turns its transport's failures into `ProviderError`s that say whether retrying can help
(`retryable`); rejected credentials are `ProviderAuthError`s naming the setting to fix. Providers never
retry, sleep or log: `VisionClassifier` does. Nothing here logs or repeats the API key or the image (and
the DashScope SDK's DEBUG dump of request bodies stays off unless asked for)."""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from typing import Any
from urllib.parse import urlsplit

from photopipe.errors import ConfigurationError, PhotopipeError

DASHSCOPE_BASE_URL_ENV = "DASHSCOPE_HTTP_BASE_URL"
MAX_OUTPUT_TOKENS = 300
_MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class Usage:
    """Tokens billed by the provider."""

    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens)


@dataclass(frozen=True)
class ProviderReply:
    text: str
    usage: Usage
    model: str
    request_id: str | None


class ProviderError(PhotopipeError):
    """A call to the vision model failed. `retryable` says whether the same call may succeed later
    (throttling, 5xx, timeouts, connection errors); `http_status` and `provider_code` are the provider's
    own. (`status`, inherited, is the HTTP status the API answers with.) The classifier sets `usage` and
    `llm_calls` to what the classification spent before this error ended it."""

    status = 502
    default_code = "llm_error"

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        http_status: int | None = None,
        provider_code: str | None = None,
        request_id: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(
            message, code=code, http_status=http_status, provider_code=provider_code, request_id=request_id
        )
        self.retryable = retryable
        self.http_status = http_status
        self.provider_code = provider_code
        self.request_id = request_id
        self.usage = Usage()
        self.llm_calls = 0

    @property
    def is_expected(self) -> bool:
        """A retryable failure (throttled, 5xx, timeout) is the provider's weather, not a fault here."""
        return self.retryable


class ProviderAuthError(ProviderError):
    """The provider rejected the API key (or the key may not use the model): a configuration problem,
    never retried. The message names the setting to fix."""

    status = 500
    default_code = "llm_auth_failed"


class VisionProvider(ABC):
    name: str
    model: str
    setting: str  # the variable that holds the provider's key, for error messages

    @abstractmethod
    def ask(self, image_jpeg: bytes, prompt: str, *, timeout: float) -> ProviderReply:
        """One request: the photo and the prompt. Raises `ProviderError`."""

    def __repr__(self) -> str:  # never the key
        return f"{type(self).__name__}(model={self.model!r})"


def jpeg_data_uri(image_jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(image_jpeg).decode("ascii")


# --------------------------------------------------------------------------- DashScope (native API)
class DashScopeProvider(VisionProvider):
    """Alibaba Cloud Model Studio (DashScope) through its official SDK's `MultiModalConversation`.

    The photo goes inline as a base64 data URI: a file path would make the SDK upload it to Alibaba's
    storage first. The endpoint is the SDK's own `DASHSCOPE_HTTP_BASE_URL`, read at each call (the SDK
    itself reads it only once, when it is imported) unless `base_url` is given. The SDK is imported on
    first use: it takes about a second to import."""

    name = "dashscope"

    def __init__(
        self,
        api_key: str,
        model: str = "qwen-vl-plus",
        *,
        key_setting: str = "DASHSCOPE_API_KEY",
        base_url: str | None = None,
    ) -> None:
        if not api_key or not api_key.strip():
            raise ConfigurationError(f"{key_setting} is empty: set it to a DashScope API key")
        self._api_key = api_key.strip()
        self.model = model
        self.setting = key_setting
        self._base_url = base_url

    def ask(self, image_jpeg: bytes, prompt: str, *, timeout: float) -> ProviderReply:
        import requests  # the SDK's transport
        from dashscope import MultiModalConversation
        from dashscope.api_entities.dashscope_response import MultiModalConversationResponse

        _keep_sdk_debug_log_off()

        options: dict[str, Any] = {"request_timeout": timeout}
        base_url = self._base_url or os.environ.get(DASHSCOPE_BASE_URL_ENV)
        if base_url:
            options["base_address"] = base_url
        messages = [{"role": "user", "content": [{"image": jpeg_data_uri(image_jpeg)}, {"text": prompt}]}]
        started = time.monotonic()
        try:
            response = MultiModalConversation.call(
                api_key=self._api_key,
                model=self.model,
                messages=messages,
                max_tokens=MAX_OUTPUT_TOKENS,
                temperature=0.0,
                **options,
            )
        except requests.exceptions.Timeout as e:
            raise _timeout_error("DashScope", timeout, started, e) from e
        except requests.exceptions.JSONDecodeError as e:
            raise ProviderError(
                f"DashScope answered with a body that is not JSON: {e}",
                retryable=False,
                code="llm_bad_response",
            ) from e
        except requests.exceptions.RequestException as e:
            raise _transport_error("DashScope", e) from e
        if not isinstance(response, MultiModalConversationResponse):  # only when stream=True
            raise TypeError(f"unexpected response type {type(response).__name__}")

        status = int(response.status_code)
        request_id = response.request_id or None
        if status != 200:
            raise _status_error(
                "DashScope",
                status,
                response.code or None,
                str(response.message or ""),
                request_id,
                setting=self.setting,
                model=self.model,
                api_key=self._api_key,
            )
        text = _dashscope_text(response.output, request_id)
        usage = _usage(response.usage, "input_tokens", "output_tokens")
        return ProviderReply(text=text, usage=usage, model=self.model, request_id=request_id)


@functools.cache
def _keep_sdk_debug_log_off() -> None:
    """The SDK logs every request body (the photo, base64) at DEBUG on the `dashscope` logger. Unless
    someone chose its level (DASHSCOPE_LOGGING_LEVEL does), keep it at INFO, so a DEBUG root logger
    does not put photos in the logs."""
    sdk_logger = logging.getLogger("dashscope")
    if sdk_logger.level == logging.NOTSET:
        sdk_logger.setLevel(logging.INFO)


def _dashscope_text(output: Any, request_id: str | None) -> str:
    try:
        content = output["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as e:
        raise ProviderError(
            f"DashScope answered 200 without output.choices[0].message.content (request {request_id})",
            retryable=False,
            request_id=request_id,
            code="llm_bad_response",
        ) from e
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part["text"] for part in content if isinstance(part, Mapping) and "text" in part)
    return ""


# --------------------------------------------------------------------------- OpenAI-compatible
class OpenAICompatibleProvider(VisionProvider):
    """Any OpenAI-style `POST {base_url}/chat/completions` that takes images as `image_url` data URIs:
    DashScope's compatible mode (`https://dashscope.aliyuncs.com/compatible-mode/v1`), vLLM, Ollama
    (`http://localhost:11434/v1`). Standard library only. An empty key sends no Authorization header
    (local servers)."""

    name = "openai"

    def __init__(
        self,
        api_key: str,
        base_url: str,
        model: str,
        *,
        key_setting: str = "PHOTOPIPE_OPENAI_API_KEY",
        url_setting: str = "PHOTOPIPE_OPENAI_BASE_URL",
    ) -> None:
        parts = urlsplit(base_url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"{url_setting}={base_url!r}: expected an http(s) URL ending in /v1")
        self._api_key = (api_key or "").strip()
        self._url = base_url.rstrip("/") + "/chat/completions"
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.setting = key_setting
        self._opener = urllib.request.build_opener()

    def ask(self, image_jpeg: bytes, prompt: str, *, timeout: float) -> ProviderReply:
        body = {
            "model": self.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": jpeg_data_uri(image_jpeg)}},
                        {"type": "text", "text": prompt},
                    ],
                }
            ],
            "max_tokens": MAX_OUTPUT_TOKENS,
            "temperature": 0,
        }
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "photopipe",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked in __init__)
            self._url, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        started = time.monotonic()
        try:
            with self._opener.open(request, timeout=timeout) as response:
                raw = response.read()
                header_request_id = response.headers.get("x-request-id")
        except urllib.error.HTTPError as e:
            raise self._http_error(e) from e
        except TimeoutError as e:
            raise _timeout_error(self._label, timeout, started, e) from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, TimeoutError):
                raise _timeout_error(self._label, timeout, started, e) from e
            raise _transport_error(self._label, e) from e
        except (HTTPException, OSError) as e:  # reset or truncated mid-answer
            raise _transport_error(self._label, e) from e
        try:
            data = json.loads(raw)
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ProviderError(
                f"{self._label} answered 200 without choices[0].message",
                retryable=False,
                code="llm_bad_response",
            ) from e
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, list):  # some servers answer with content parts
            text = "".join(
                p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text"
            )
        else:
            text = content if isinstance(content, str) else ""
        request_id = header_request_id or (data.get("id") if isinstance(data.get("id"), str) else None)
        return ProviderReply(
            text=text,
            usage=_usage(data.get("usage"), "prompt_tokens", "completion_tokens"),
            model=str(data.get("model") or self.model),
            request_id=request_id,
        )

    @property
    def _label(self) -> str:
        return f"the OpenAI-compatible endpoint at {self.base_url}"

    def _http_error(self, e: urllib.error.HTTPError) -> ProviderError:
        raw = e.read() if e.fp is not None else b""
        message, code, request_id = "", None, e.headers.get("x-request-id") if e.headers else None
        try:
            data = json.loads(raw)
        except ValueError:
            message = raw.decode("utf-8", "replace")
        else:
            error = data.get("error") if isinstance(data, Mapping) else None
            if isinstance(error, Mapping):
                message = str(error.get("message") or "")
                code = str(error.get("code") or error.get("type") or "") or None
            elif isinstance(data, Mapping):  # DashScope-native-style or other bodies
                message = str(data.get("message") or data.get("detail") or "")
                code = str(data.get("code") or "") or None
            if isinstance(data, Mapping) and isinstance(data.get("request_id"), str):
                request_id = request_id or data["request_id"]
        return _status_error(
            self._label,
            e.code,
            code,
            message or str(e.reason),
            request_id,
            setting=self.setting,
            model=self.model,
            api_key=self._api_key,
        )


# --------------------------------------------------------------------------- shared mapping
_AUTH_CODES = frozenset({"InvalidApiKey", "invalid_api_key"})
_THROTTLING_CODES = frozenset({"limit_requests", "rate_limit_exceeded"})
# Out of credit (OpenAI answers 429 insufficient_quota; DashScope 400 Arrearage): retrying cannot help.
_QUOTA_CODES = frozenset({"insufficient_quota", "Arrearage"})
_CONTENT_CODES = frozenset({"DataInspectionFailed", "data_inspection_failed"})


def _status_error(
    who: str,
    status: int,
    code: str | None,
    message: str,
    request_id: str | None,
    *,
    setting: str,
    model: str,
    api_key: str,
) -> ProviderError:
    """One mapping for both APIs: 401/403/invalid key → ProviderAuthError; 408/429/5xx/throttling →
    retryable; any other 4xx (bad parameter, content inspection) → not retryable."""
    if api_key:  # some servers echo the key they refused
        message = message.replace(api_key, "***")
    message = _clip(message.strip()) or "no message"
    detail = f"{code}: {message}" if code else message
    where = f"{setting} (or the secret named by {setting}_SECRET_ID)"
    cls: type[ProviderError] = ProviderError
    retryable = False
    if status == 401 or code in _AUTH_CODES:
        cls, error_code = ProviderAuthError, None
        text = f"{_cap(who)} rejected the API key ({detail}). Set {where} to a valid key."
    elif status == 403:
        cls, error_code = ProviderAuthError, None
        text = (
            f"{_cap(who)} refused access ({status} {detail}). "
            f"Check that the key in {where} may use model {model!r}."
        )
    else:
        text = f"{_cap(who)} answered {status} ({detail})"
        if code in _QUOTA_CODES:
            error_code = "llm_quota_exhausted"
        elif status == 429 or (code or "").startswith("Throttling") or code in _THROTTLING_CODES:
            retryable, error_code = True, "llm_throttled"
        elif status >= 500 or status == 408:
            retryable, error_code = True, "llm_unavailable"
        elif code in _CONTENT_CODES:
            error_code = "llm_content_refused"
        else:
            error_code = "llm_rejected_request"
    return cls(
        text,
        retryable=retryable,
        http_status=status,
        provider_code=code,
        request_id=request_id,
        code=error_code,
    )


def _timeout_error(who: str, timeout: float, started: float, e: BaseException) -> ProviderError:
    waited = time.monotonic() - started
    return ProviderError(
        f"{_cap(who)} did not answer in time ({waited:.1f} s, timeout {timeout:.1f} s: {type(e).__name__})",
        retryable=True,
        code="llm_timeout",
    )


def _transport_error(who: str, e: BaseException) -> ProviderError:
    return ProviderError(
        f"could not reach {who}: {type(e).__name__}: {_clip(str(e))}", retryable=True, code="llm_unreachable"
    )


def _usage(raw: Any, input_key: str, output_key: str) -> Usage:
    if not isinstance(raw, Mapping):
        return Usage()

    def count(key: str) -> int:
        value = raw.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

    return Usage(count(input_key), count(output_key))


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_MESSAGE_CHARS else text[:_MAX_MESSAGE_CHARS] + "…"


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]
