"""What the classify function does with what a real model answers: extra keys are ignored, an answer that
stays invalid after the stricter retry is a final failure (at most 2 model calls, never redelivered to
burn more), and a provider that throttles, errs or hangs is retried with backoff and then left to the
queue (redelivery, then the DLQ) - through the real SDK against the fake DashScope on loopback."""

# ruff: noqa: F811 - the fixtures imported from test_classify are used as parameters

from __future__ import annotations

import time
from typing import Any

from photopipe.classification.prompt import build_prompt
from tests.conftest import FakeContext
from tests.fakes.dashscope_server import FakeDashScope
from tests.integration.conftest import ApiClient, Stack, jpeg_bytes
from tests.integration.test_classify import (  # noqa: F401 - fixtures
    classify_event,
    classify_handler,
    dashscope,
    ingest,
)

PETS = '{"category": "pets", "confidence": 0.93, "reason": "a cat looking at the camera"}'
NO_FAILURES: dict[str, list[Any]] = {"batchItemFailures": []}


def _failed_once(result: dict[str, Any]) -> bool:
    return len(result["batchItemFailures"]) == 1


def test_an_answer_with_keys_the_schema_does_not_name_is_taken(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    # GIVEN a model that adds keys of its own (labels, tags, nested details)
    dashscope.responder = lambda _image: (
        '{"category": "pets", "label": "宠物萌照", "label_en": "Pets", "confidence": 0.93, '
        '"reason": "a cat", "tags": ["cat", "sofa"], "details": {"animal": "cat"}}'
    )
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))

    assert classify_handler(classify_event(image_id), FakeContext()) == NO_FAILURES

    record = stack.image(image_id)
    assert record["state"] == "classified"
    assert (record["classification"]["category"], record["classification"]["reason"]) == ("pets", "a cat")
    assert len(dashscope.llm_requests) == 1, "one call: nothing was retried"


def test_garbage_answers_cost_two_calls_then_a_final_failure_that_is_not_redelivered(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope, api: ApiClient
) -> None:
    # GIVEN a model that answers garbage, whatever the prompt
    dashscope.responder = lambda _image: "I'm sorry, I cannot help with that. 🐱 {category: pets?"
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))

    # WHEN the photo is classified, and SQS delivers the same message twice more (at-least-once)
    results = [classify_handler(classify_event(image_id, receive_count=n), FakeContext()) for n in (1, 2, 3)]

    # THEN the message is consumed at once, the model was asked twice (the answer and the stricter retry),
    # and the photo says why it has no category, for good
    assert results == [NO_FAILURES] * 3
    assert len(dashscope.llm_requests) == 2
    assert [r.prompt for r in dashscope.llm_requests] == [build_prompt(), build_prompt(strict=True)]
    record = stack.image(image_id)
    assert (record["state"], record["reason"]) == ("classification_failed", "invalid_answer")
    assert "will be retried" not in record["reason_message"]
    # and nothing was cached: the category is not known for this photo
    token = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": "answers", "email": "answers@example.com", "password": "p" * 12},
    )[1]["token"]
    status, check = api.call(
        "POST", "/api/v1/classify/check-cache", token=token, body={"sha256": record["sha256"]}
    )
    assert (status, check["hit"]) == (200, False)


def test_a_429_storm_is_retried_with_backoff_across_deliveries_until_it_recovers(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    # GIVEN a provider that answers 429 to the next 6 calls, then works
    dashscope.responder = lambda _image: PETS
    dashscope.fail_next(6, status=429)
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))

    # WHEN the first delivery spends its 4 attempts on 429s
    first = classify_handler(classify_event(image_id, receive_count=1), FakeContext())

    # THEN the message goes back to the queue, the photo says it will be retried, nothing is cached
    assert _failed_once(first)
    record = stack.image(image_id)
    assert record["state"] == "classification_failed"
    assert "will be retried" in record["reason_message"]
    assert (len(dashscope.llm_requests), dashscope.failed_requests) == (4, 4)

    # WHEN SQS redelivers it: two more 429s, then an answer
    second = classify_handler(classify_event(image_id, receive_count=2), FakeContext())

    # THEN it is classified by the model, after 7 calls in all (6 refused, 1 answered)
    assert second == NO_FAILURES
    record = stack.image(image_id)
    assert (record["state"], record["classification"]["category"]) == ("classified", "pets")
    assert (len(dashscope.llm_requests), dashscope.failed_requests) == (7, 6)


def test_5xx_on_every_attempt_ends_in_the_dlq_with_the_reason_on_the_photo(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    dashscope.fail_next(100, status=500)
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))

    results = [classify_handler(classify_event(image_id, receive_count=n), FakeContext()) for n in (1, 2, 3)]

    # every delivery failed (after its retries), so SQS moves the message to the DLQ after the third
    assert all(_failed_once(r) for r in results)
    assert len(dashscope.llm_requests) == 12, "4 attempts per delivery, 3 deliveries"
    record = stack.image(image_id)
    assert record["state"] == "classification_failed"
    assert "500" in record["reason_message"]
    assert "will be retried" not in record["reason_message"], "the last attempt says it is the last"


def test_a_call_that_times_out_is_retried(
    stack: Stack, ingest_handler: Any, classify_handler: Any, dashscope: FakeDashScope
) -> None:
    # GIVEN a budget that gives each call 3 s (14 s left - 10 s kept for writing - 1 s margin) and a
    # provider whose next answer takes 4 s
    dashscope.answer_next(PETS, delay=4.0)
    dashscope.responder = lambda _image: PETS
    image_id = ingest(stack, ingest_handler, jpeg_bytes((600, 400)))

    result = classify_handler(classify_event(image_id), FakeContext(timeout_ms=14_000))

    assert result == NO_FAILURES
    assert stack.image(image_id)["state"] == "classified"
    # the fake records the slow call when it has finished waiting, after the client gave up on it
    deadline = time.monotonic() + 10
    while len(dashscope.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(dashscope.requests) == 2, "the slow call, then the retry that answered"
