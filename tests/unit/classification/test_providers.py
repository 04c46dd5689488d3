"""The providers against the fake DashScope: the real SDK (native API) and the stdlib client
(OpenAI-compatible mode), their request shapes and their error mapping."""

from __future__ import annotations

import time

import pytest

from photopipe.classification import (
    DashScopeProvider,
    OpenAICompatibleProvider,
    ProviderAuthError,
    ProviderError,
    Usage,
)
from photopipe.errors import ConfigurationError
from tests.fakes.dashscope_server import COMPATIBLE_PATH, DEFAULT_API_KEY, NATIVE_PATH, FakeDashScope
from tests.unit.classification.conftest import answer, jpeg

PROMPT = "Classify this photo."


# --------------------------------------------------------------------------- DashScope native (SDK)
def test_dashscope_sends_the_photo_inline_and_reads_text_and_usage(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    photo = jpeg("green")

    reply = dashscope.ask(photo, PROMPT, timeout=5)

    assert reply.text == answer("travel_scenery", 0.8, "The photo is mostly green.")
    [request] = fake.requests  # one request, and nothing else (no upload-policy call)
    assert (request.method, request.path) == ("POST", NATIVE_PATH)
    assert request.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert request.headers["content-type"].startswith("application/json")
    assert request.body["model"] == "qwen-vl-plus"
    assert request.body["parameters"] == {"max_tokens": 300, "temperature": 0.0}
    assert request.image_url is not None
    assert request.image_url.startswith("data:image/jpeg;base64,")
    assert request.image == photo
    assert request.prompt == PROMPT
    assert request.usage is not None
    assert reply.usage == Usage(request.usage.input_tokens, request.usage.output_tokens)
    assert reply.usage.input_tokens > 0
    assert reply.usage.output_tokens > 0
    assert reply.model == "qwen-vl-plus"
    assert reply.request_id


def test_dashscope_joins_every_text_part_of_the_answer(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    content = [{"text": '{"category": "pets", '}, {"text": '"confidence": 0.7, "reason": "A dog."}'}]
    fake.enqueue(
        200,
        {
            "output": {
                "choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": content}}]
            },
            "usage": {"input_tokens": 10, "output_tokens": 5},
            "request_id": "req-1",
        },
    )

    reply = dashscope.ask(jpeg(), PROMPT, timeout=5)

    assert reply.text == '{"category": "pets", "confidence": 0.7, "reason": "A dog."}'
    assert (reply.usage, reply.request_id) == (Usage(10, 5), "req-1")


def test_dashscope_base_url_is_read_at_call_time(
    fake: FakeDashScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a provider built while the variable pointed somewhere else
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", "http://127.0.0.1:9/api/v1")
    provider = DashScopeProvider(DEFAULT_API_KEY, "qwen-vl-max")
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", fake.base_url)

    provider.ask(jpeg(), PROMPT, timeout=5)

    assert [r.body["model"] for r in fake.requests] == ["qwen-vl-max"]


def test_dashscope_explicit_base_url_wins(fake: FakeDashScope, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", "http://127.0.0.1:9/api/v1")
    provider = DashScopeProvider(DEFAULT_API_KEY, base_url=fake.base_url)

    provider.ask(jpeg(), PROMPT, timeout=5)

    assert len(fake.llm_requests) == 1


@pytest.mark.parametrize(
    ("status", "code", "retryable", "our_code"),
    [
        (429, "Throttling.RateQuota", True, "llm_throttled"),
        (400, "Throttling.AllocationQuota", True, "llm_throttled"),
        (500, "InternalError", True, "llm_unavailable"),
        (503, "ServiceUnavailable", True, "llm_unavailable"),
        (400, "InvalidParameter", False, "llm_rejected_request"),
        (400, "DataInspectionFailed", False, "llm_content_refused"),
        (400, "Arrearage", False, "llm_quota_exhausted"),
    ],
)
def test_dashscope_failed_calls_map_to_provider_errors(
    fake: FakeDashScope, dashscope: DashScopeProvider, status: int, code: str, retryable: bool, our_code: str
) -> None:
    fake.fail_next(status=status, code=code, message="Something went wrong.")

    with pytest.raises(ProviderError) as info:
        dashscope.ask(jpeg(), PROMPT, timeout=5)

    error = info.value
    assert not isinstance(error, ProviderAuthError)
    assert (error.retryable, error.http_status, error.provider_code, error.code) == (
        retryable,
        status,
        code,
        our_code,
    )
    assert error.message == f"DashScope answered {status} ({code}: Something went wrong.)"
    assert error.request_id
    assert error.status == 502  # what the API would answer


def test_dashscope_rejected_key_names_the_setting(fake: FakeDashScope) -> None:
    provider = DashScopeProvider("sk-wrong-key-123")

    with pytest.raises(ProviderAuthError) as info:
        provider.ask(jpeg(), PROMPT, timeout=5)

    assert info.value.message == (
        "DashScope rejected the API key (InvalidApiKey: Invalid API-key provided.). "
        "Set DASHSCOPE_API_KEY (or the secret named by DASHSCOPE_API_KEY_SECRET_ID) to a valid key."
    )
    assert (info.value.retryable, info.value.http_status, info.value.code) == (False, 401, "llm_auth_failed")
    assert "sk-wrong-key-123" not in str(info.value)


def test_dashscope_forbidden_model_is_an_auth_error(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    fake.fail_next(status=403, code="AccessDenied.Unpurchased", message="Access to model denied.")

    with pytest.raises(ProviderAuthError, match=r"may use model 'qwen-vl-plus'") as info:
        dashscope.ask(jpeg(), PROMPT, timeout=5)

    assert not info.value.retryable


def test_dashscope_timeout_is_retryable_and_respects_the_timeout(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    fake.delay = 2.0
    started = time.monotonic()

    with pytest.raises(ProviderError) as info:
        dashscope.ask(jpeg(), PROMPT, timeout=0.3)

    assert time.monotonic() - started < 1.5
    assert (info.value.retryable, info.value.code) == (True, "llm_timeout")
    assert "did not answer in time" in info.value.message


def test_dashscope_connection_refused_is_retryable(fake: FakeDashScope, dashscope: DashScopeProvider) -> None:
    fake.stop()

    with pytest.raises(ProviderError) as info:
        dashscope.ask(jpeg(), PROMPT, timeout=2)

    assert (info.value.retryable, info.value.code) == (True, "llm_unreachable")
    assert "could not reach DashScope" in info.value.message


def test_dashscope_non_json_error_body_is_still_mapped(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    fake.enqueue(502, b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"})

    with pytest.raises(ProviderError) as info:
        dashscope.ask(jpeg(), PROMPT, timeout=5)

    assert (info.value.retryable, info.value.http_status) == (True, 502)


def test_dashscope_needs_a_key_and_never_shows_it() -> None:
    with pytest.raises(ConfigurationError, match="DASHSCOPE_API_KEY is empty"):
        DashScopeProvider(" ")
    provider = DashScopeProvider("sk-secret-abc")
    assert "sk-secret-abc" not in repr(provider)
    assert (provider.name, provider.model, provider.setting) == (
        "dashscope",
        "qwen-vl-plus",
        "DASHSCOPE_API_KEY",
    )


# --------------------------------------------------------------------------- OpenAI-compatible
def test_openai_compatible_request_and_reply(fake: FakeDashScope, openai: OpenAICompatibleProvider) -> None:
    photo = jpeg("blue")

    reply = openai.ask(photo, PROMPT, timeout=5)

    assert reply.text == answer("screenshot", 0.8, "The photo is mostly blue.")
    [request] = fake.requests
    assert (request.method, request.path) == ("POST", COMPATIBLE_PATH)
    assert request.headers["authorization"] == f"Bearer {DEFAULT_API_KEY}"
    assert request.body["model"] == "qwen-vl-plus"
    assert (request.body["max_tokens"], request.body["temperature"]) == (300, 0)
    content = request.body["messages"][0]["content"]
    assert [part["type"] for part in content] == ["image_url", "text"]
    assert request.image == photo
    assert request.prompt == PROMPT
    assert request.usage is not None
    assert reply.usage == Usage(request.usage.input_tokens, request.usage.output_tokens)
    assert reply.request_id


def test_openai_compatible_content_parts_are_joined(
    fake: FakeDashScope, openai: OpenAICompatibleProvider
) -> None:
    parts = [{"type": "text", "text": "{"}, {"type": "text", "text": "}"}]
    fake.enqueue(200, {"choices": [{"message": {"role": "assistant", "content": parts}}], "model": "m"})

    reply = openai.ask(jpeg(), PROMPT, timeout=5)

    assert (reply.text, reply.usage, reply.model) == ("{}", Usage(), "m")


def test_openai_compatible_throttling_is_retryable(
    fake: FakeDashScope, openai: OpenAICompatibleProvider
) -> None:
    fake.fail_next(status=429)

    with pytest.raises(ProviderError) as info:
        openai.ask(jpeg(), PROMPT, timeout=5)

    assert (info.value.retryable, info.value.http_status, info.value.provider_code) == (
        True,
        429,
        "limit_requests",
    )
    assert "Requests rate limit exceeded" in info.value.message


def test_openai_compatible_quota_exhausted_is_final(
    fake: FakeDashScope, openai: OpenAICompatibleProvider
) -> None:
    fake.fail_next(status=429, code="insufficient_quota", message="You exceeded your current quota.")

    with pytest.raises(ProviderError) as info:
        openai.ask(jpeg(), PROMPT, timeout=5)

    assert (info.value.retryable, info.value.code) == (False, "llm_quota_exhausted")


def test_openai_compatible_rejected_key_names_the_setting(fake: FakeDashScope) -> None:
    provider = OpenAICompatibleProvider("sk-wrong-key-123", fake.compatible_base_url, "qwen-vl-plus")

    with pytest.raises(ProviderAuthError) as info:
        provider.ask(jpeg(), PROMPT, timeout=5)

    assert info.value.message == (
        f"The OpenAI-compatible endpoint at {fake.compatible_base_url} rejected the API key "
        "(invalid_api_key: Invalid API-key provided.). Set PHOTOPIPE_OPENAI_API_KEY "
        "(or the secret named by PHOTOPIPE_OPENAI_API_KEY_SECRET_ID) to a valid key."
    )


def test_openai_compatible_without_a_key_sends_no_authorization(fake: FakeDashScope) -> None:
    provider = OpenAICompatibleProvider("", fake.compatible_base_url + "/", "llava")  # e.g. Ollama

    with pytest.raises(ProviderAuthError, match="No API-key provided"):
        provider.ask(jpeg(), PROMPT, timeout=5)

    [request] = fake.requests
    assert "authorization" not in request.headers
    assert request.path == COMPATIBLE_PATH


def test_openai_compatible_echoed_key_is_redacted(
    fake: FakeDashScope, openai: OpenAICompatibleProvider
) -> None:
    fake.fail_next(status=400, code="invalid_request_error", message=f"Bad request for key {DEFAULT_API_KEY}")

    with pytest.raises(ProviderError) as info:
        openai.ask(jpeg(), PROMPT, timeout=5)

    assert DEFAULT_API_KEY not in info.value.message
    assert "***" in info.value.message


def test_openai_compatible_timeout_and_refused_are_retryable(
    fake: FakeDashScope, openai: OpenAICompatibleProvider
) -> None:
    fake.delay = 2.0
    started = time.monotonic()
    with pytest.raises(ProviderError) as timed_out:
        openai.ask(jpeg(), PROMPT, timeout=0.3)
    assert time.monotonic() - started < 1.5
    assert (timed_out.value.retryable, timed_out.value.code) == (True, "llm_timeout")

    fake.stop()
    with pytest.raises(ProviderError) as refused:
        openai.ask(jpeg(), PROMPT, timeout=2)
    assert (refused.value.retryable, refused.value.code) == (True, "llm_unreachable")


@pytest.mark.parametrize("url", ["", "file:///etc/passwd", "localhost:8000/v1", "ftp://example.com/v1"])
def test_openai_compatible_needs_an_http_url(url: str) -> None:
    with pytest.raises(ConfigurationError, match="PHOTOPIPE_OPENAI_BASE_URL"):
        OpenAICompatibleProvider("k", url, "m")


@pytest.mark.parametrize(
    ("status", "body", "headers"),
    [
        (200, b"<html>captive portal</html>", {"Content-Type": "text/html"}),
        (200, {"output": {"choices": []}, "usage": {}, "request_id": "r"}, {}),
    ],
    ids=["not-json", "no-choices"],
)
def test_dashscope_unreadable_success_is_a_bad_response(
    fake: FakeDashScope, dashscope: DashScopeProvider, status: int, body: object, headers: dict[str, str]
) -> None:
    fake.enqueue(status, body, headers=headers)

    with pytest.raises(ProviderError) as info:
        dashscope.ask(jpeg(), PROMPT, timeout=5)

    assert (info.value.retryable, info.value.code) == (False, "llm_bad_response")
