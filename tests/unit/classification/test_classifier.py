"""VisionClassifier with the real providers against the fake DashScope: retries, the strict retry,
the time budget, and what is spent."""

from __future__ import annotations

import contextlib
import logging
import time
from base64 import b64encode
from collections.abc import Iterator

import pytest

from photopipe.classification import (
    Category,
    ClassificationFailed,
    DashScopeProvider,
    OpenAICompatibleProvider,
    ProviderAuthError,
    ProviderError,
    Usage,
    VisionClassifier,
    build_prompt,
)
from photopipe.observability import logger
from tests.fakes.dashscope_server import DEFAULT_API_KEY, FakeDashScope
from tests.unit.classification.conftest import Clock, jpeg


def _spent(fake: FakeDashScope) -> Usage:
    total = Usage()
    for request in fake.llm_requests:
        if request.usage is not None:
            total += Usage(request.usage.input_tokens, request.usage.output_tokens)
    return total


def _classifier(
    provider: DashScopeProvider | OpenAICompatibleProvider,
    clock: Clock,
    *,
    max_attempts: int = 4,
    max_call_timeout: float = 30.0,
    min_call_timeout: float = 2.0,
) -> VisionClassifier:
    return VisionClassifier(
        provider,
        max_attempts=max_attempts,
        sleep=clock.sleep,
        max_call_timeout=max_call_timeout,
        min_call_timeout=min_call_timeout,
    )


# --------------------------------------------------------------------------- answers
@pytest.mark.parametrize(
    ("colour", "category"), [("red", Category.FOODS), ("green", Category.TRAVEL_SCENERY)]
)
def test_classifies_in_one_call(
    fake: FakeDashScope, dashscope: DashScopeProvider, colour: str, category: Category
) -> None:
    clock = Clock(left=60)

    result = _classifier(dashscope, clock).classify(jpeg(colour), time_left=clock.time_left)

    assert result.answer.category == category
    assert result.answer.confidence == 0.8
    assert result.answer.reason == f"The photo is mostly {colour}."
    assert (result.llm_calls, result.model) == (1, "qwen-vl-plus")
    assert result.usage == _spent(fake) != Usage()
    assert [r.prompt for r in fake.llm_requests] == [build_prompt()]
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"category": "pets", "confidence": 0.9, "reason": "A cat."}\n```',
        'The answer is {"category": "pets", "confidence": 0.9, "reason": "A cat."} as requested.',
    ],
    ids=["fenced", "prose"],
)
def test_fenced_or_wrapped_answers_need_no_retry(
    fake: FakeDashScope, dashscope: DashScopeProvider, text: str
) -> None:
    fake.answer_next(text)
    clock = Clock(left=60)

    result = _classifier(dashscope, clock).classify(jpeg(), time_left=clock.time_left)

    assert (result.answer.category, result.llm_calls) == (Category.PETS, 1)


def test_answer_outside_the_schema_gets_one_strict_retry(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    fake.answer_next("I think this photo shows a delicious bowl of noodles, so: foods.")
    clock = Clock(left=60)

    result = _classifier(dashscope, clock).classify(jpeg("red"), time_left=clock.time_left)

    assert result.answer.category == Category.FOODS
    assert result.llm_calls == 2
    first, second = fake.llm_requests
    assert first.prompt == build_prompt()
    assert second.prompt == build_prompt(strict=True)
    assert result.usage == _spent(fake)  # the wasted answer is paid for too
    assert clock.sleeps == []


def test_two_answers_outside_the_schema_fail_without_a_guess(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    fake.answer_next('{"category": "noodles", "confidence": 0.9, "reason": "Food."}')
    fake.answer_next("foods")
    clock = Clock(left=60)

    with pytest.raises(ClassificationFailed) as info:
        _classifier(dashscope, clock).classify(jpeg("red"), time_left=clock.time_left)

    error = info.value
    assert error.message.startswith("the model's answer was not a valid classification: no JSON object")
    assert (error.code, error.llm_calls) == ("classification_failed", 2)
    assert error.usage == _spent(fake)
    assert len(fake.llm_requests) == 2


# --------------------------------------------------------------------------- retries
def test_throttled_then_answered(fake: FakeDashScope, dashscope: DashScopeProvider) -> None:
    fake.fail_next(1, status=429)
    clock = Clock(left=60)

    result = _classifier(dashscope, clock).classify(jpeg("green"), time_left=clock.time_left)

    assert result.answer.category == Category.TRAVEL_SCENERY
    assert result.llm_calls == 2
    assert [r.status for r in fake.llm_requests] == [429, 200]
    assert len(clock.sleeps) == 1
    assert 0 <= clock.sleeps[0] <= 0.5  # full jitter under base_delay * 2**0
    assert result.usage == _spent(fake)


def test_backoff_is_full_jitter_under_an_exponential_cap(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    fake.fail_next(4, status=429)
    clock = Clock(left=600)
    draws = iter([1.0, 0.5, 0.25, 1.0])
    classifier = VisionClassifier(
        dashscope,
        max_attempts=5,
        base_delay=1.0,
        max_delay=4.0,
        sleep=clock.sleep,
        random=lambda: next(draws),
    )

    result = classifier.classify(jpeg(), time_left=clock.time_left)

    # caps 1, 2, 4, 4 (max_delay) times the draws
    assert clock.sleeps == [1.0, 1.0, 1.0, 4.0]
    assert [classifier.backoff_cap(n) for n in range(5)] == [1.0, 2.0, 4.0, 4.0, 4.0]
    assert result.llm_calls == 5


def test_persistent_server_errors_give_up_after_max_attempts(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    fake.fail_next(10, status=500)
    clock = Clock(left=600)

    with pytest.raises(ProviderError) as info:
        VisionClassifier(dashscope, max_attempts=4, sleep=clock.sleep).classify(
            jpeg(), time_left=clock.time_left
        )

    error = info.value
    assert (error.retryable, error.http_status, error.provider_code) == (True, 500, "InternalError")
    assert (error.llm_calls, error.usage) == (4, Usage())
    assert len(fake.llm_requests) == 4
    assert len(clock.sleeps) == 3
    assert all(0 <= s <= min(8.0, 0.5 * 2**n) for n, s in enumerate(clock.sleeps))


def test_sleeps_never_run_past_the_budget(fake: FakeDashScope, dashscope: DashScopeProvider) -> None:
    # GIVEN 6 s left, a 1 s margin and calls that need at least 2 s: 3 s may be slept in all
    fake.fail_next(10, status=429)
    clock = Clock(left=6.0)
    classifier = VisionClassifier(
        dashscope, max_attempts=10, base_delay=5.0, sleep=clock.sleep, random=lambda: 1.0, safety_margin=1.0
    )

    with pytest.raises(ProviderError) as info:
        classifier.classify(jpeg(), time_left=clock.time_left)

    assert info.value.http_status == 429
    assert sum(clock.sleeps) <= 6.0 - 1.0 - 2.0
    assert clock.sleeps == [3.0]  # the 5 s backoff shortened to what the budget allows, then no more room
    assert info.value.llm_calls == len(fake.llm_requests) == 2


def test_no_call_without_enough_time(fake: FakeDashScope, dashscope: DashScopeProvider) -> None:
    clock = Clock(left=2.5)

    with pytest.raises(ProviderError) as info:
        _classifier(dashscope, clock).classify(jpeg(), time_left=clock.time_left)

    assert (info.value.retryable, info.value.code, info.value.llm_calls) == (True, "llm_timeout", 0)
    assert "no time left to call dashscope" in info.value.message
    assert fake.requests == []


def test_rejected_key_is_not_retried(fake: FakeDashScope) -> None:
    clock = Clock(left=60)

    with pytest.raises(ProviderAuthError, match=r"Set DASHSCOPE_API_KEY \(or the secret named by") as info:
        _classifier(DashScopeProvider("sk-wrong"), clock).classify(jpeg(), time_left=clock.time_left)

    assert (info.value.retryable, info.value.llm_calls) == (False, 1)
    assert len(fake.requests) == 1
    assert clock.sleeps == []


def test_bad_request_is_not_retried(fake: FakeDashScope, dashscope: DashScopeProvider) -> None:
    fake.fail_next(
        1, status=400, code="DataInspectionFailed", message="Input data may contain inappropriate content."
    )
    clock = Clock(left=60)

    with pytest.raises(ProviderError) as info:
        _classifier(dashscope, clock).classify(jpeg(), time_left=clock.time_left)

    assert (info.value.retryable, info.value.code, info.value.llm_calls) == (False, "llm_content_refused", 1)
    assert clock.sleeps == []


def test_unreachable_server_is_retried_then_reported(
    fake: FakeDashScope, dashscope: DashScopeProvider
) -> None:
    fake.stop()
    clock = Clock(left=60)

    with pytest.raises(ProviderError) as info:
        _classifier(dashscope, clock, max_attempts=3).classify(jpeg(), time_left=clock.time_left)

    assert (info.value.retryable, info.value.code, info.value.llm_calls) == (True, "llm_unreachable", 3)
    assert len(clock.sleeps) == 2


def test_slow_server_times_out_per_call(fake: FakeDashScope, dashscope: DashScopeProvider) -> None:
    # GIVEN a server slower than the per-call timeout the classifier allows
    fake.delay = 3.0
    clock = Clock(left=60)
    classifier = _classifier(dashscope, clock, max_attempts=2, max_call_timeout=0.3, min_call_timeout=0.1)
    started = time.monotonic()

    with pytest.raises(ProviderError) as info:
        classifier.classify(jpeg(), time_left=clock.time_left)

    assert time.monotonic() - started < 2.0
    assert (info.value.retryable, info.value.code, info.value.llm_calls) == (True, "llm_timeout", 2)


def test_recovers_from_a_timeout(fake: FakeDashScope, dashscope: DashScopeProvider) -> None:
    fake.answer_next('{"category": "pets", "confidence": 0.9, "reason": "late"}', delay=2.0)
    clock = Clock(left=60)
    classifier = _classifier(dashscope, clock, max_call_timeout=0.3, min_call_timeout=0.1)

    result = classifier.classify(jpeg("blue"), time_left=clock.time_left)

    assert (result.answer.category, result.llm_calls) == (Category.SCREENSHOT, 2)


# --------------------------------------------------------------------------- OpenAI-compatible
def test_openai_compatible_provider_classifies_and_retries(
    fake: FakeDashScope, openai: OpenAICompatibleProvider
) -> None:
    fake.fail_next(1, status=429)
    clock = Clock(left=60)

    result = _classifier(openai, clock).classify(jpeg("red"), time_left=clock.time_left)

    assert (result.answer.category, result.llm_calls, result.model) == (Category.FOODS, 2, "qwen-vl-plus")
    assert result.usage == _spent(fake)
    assert [r.api for r in fake.requests] == ["openai", "openai"]
    assert len(clock.sleeps) == 1


def test_openai_compatible_rejected_key_is_not_retried(fake: FakeDashScope) -> None:
    clock = Clock(left=60)
    provider = OpenAICompatibleProvider("sk-wrong", fake.compatible_base_url, "qwen-vl-plus")

    with pytest.raises(ProviderAuthError, match="Set PHOTOPIPE_OPENAI_API_KEY"):
        _classifier(provider, clock).classify(jpeg(), time_left=clock.time_left)

    assert len(fake.requests) == 1


# --------------------------------------------------------------------------- logs
@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # every logger: ours, the SDK's, urllib3's
    logger.setLevel("DEBUG")
    try:
        yield caplog
    finally:
        logger.setLevel("WARNING")


def test_logs_each_attempt_and_never_the_key_or_the_photo(
    fake: FakeDashScope, debug_logs: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = jpeg("green", size=(200, 150))
    fake.fail_next(1, status=429)
    fake.answer_next("not json")
    clock = Clock(left=60)
    for provider in (DashScopeProvider(DEFAULT_API_KEY), DashScopeProvider("sk-wrong-key-xyz")):
        with contextlib.suppress(ProviderAuthError):
            _classifier(provider, clock).classify(photo, time_left=clock.time_left)
    fake.stop()
    with pytest.raises(ProviderError):
        _classifier(DashScopeProvider(DEFAULT_API_KEY), clock, max_attempts=1).classify(
            photo, time_left=clock.time_left
        )

    ours = [r for r in debug_logs.records if r.name == "photopipe"]
    attempts = [r for r in ours if r.getMessage().startswith("vision model")]
    assert [(r.getMessage(), getattr(r, "attempt", None)) for r in attempts] == [
        ("vision model call failed", 1),
        ("vision model answered outside the schema", 2),
        ("vision model answered", 3),
        ("vision model call failed", 1),
        ("vision model call failed", 1),
    ]
    failed = attempts[0]
    assert {k: getattr(failed, k) for k in ("provider", "model", "status", "code", "retryable")} == {
        "provider": "dashscope",
        "model": "qwen-vl-plus",
        "status": 429,
        "code": "Throttling.RateQuota",
        "retryable": True,
    }
    assert isinstance(getattr(failed, "ms", None), int)

    everything = "\n".join(
        [debug_logs.text, capsys.readouterr().out]
        + [str(r.__dict__) for r in debug_logs.records]
        + [str(r.args) for r in debug_logs.records]
    )
    for key in (DEFAULT_API_KEY, "sk-wrong-key-xyz"):
        assert key not in everything
    assert b64encode(photo).decode()[:200] not in everything  # not even in the SDK's own DEBUG records
