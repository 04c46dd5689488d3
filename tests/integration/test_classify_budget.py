"""A batch of classifications fits the function's timeout: each record gets its own budget, so a record
after one whose model never answered still gets a full try instead of timing out and using up a receive."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from photopipe.adapters.classification_cache import ClassificationCache
from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.stats import StatsRepository
from photopipe.classification import (
    PROMPT_VERSION,
    ProviderError,
    ProviderReply,
    VisionClassifier,
    VisionProvider,
)
from photopipe.models import ImageState
from photopipe.usecases.classify import RECORD_BUDGET_S, ImageClassifier, Prices
from tests.integration.conftest import Stack, jpeg_bytes

FUNCTION_TIMEOUT_S = 180.0  # template.yaml, ClassifyFunction
BATCH_SIZE = 2  # template.yaml, the classify queue's event source


@dataclass
class Clock:
    now: float = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class NeverAnswers(VisionProvider):
    """A model that takes every call's whole timeout and then fails it (the worst case the budget covers)."""

    clock: Clock
    calls: list[tuple[float, float]] = field(default_factory=list)
    name: str = "fake"
    model: str = "fake-vl"
    setting: str = "FAKE_API_KEY"

    def ask(self, image_jpeg: bytes, prompt: str, *, timeout: float) -> ProviderReply:
        self.calls.append((self.clock.now, timeout))
        self.clock.now += timeout
        raise ProviderError(
            f"the model did not answer within {timeout:.1f} s", retryable=True, code="llm_timeout"
        )


def _processed(stack: Stack, n: int) -> str:
    image_id = stack.seed_image(f"originals/u1/img{n}/p.jpg", ImageState.PROCESSED)
    preview = f"derived/u1/{image_id}/preview.jpg"
    stack.s3.put_object(Bucket=stack.bucket, Key=preview, Body=jpeg_bytes((64, 48)))
    stack.dynamodb.Table(stack.images_table).update_item(
        Key={"image_id": image_id},
        UpdateExpression="SET sha256 = :s, preview_key = :p",
        ExpressionAttributeValues={":s": f"{n:064x}", ":p": preview},
    )
    return image_id


def test_each_record_of_a_batch_gets_its_budget_and_the_batch_fits_the_timeout(stack: Stack) -> None:
    # GIVEN a batch of two photos and a model that never answers
    clock = Clock()
    provider = NeverAnswers(clock)
    classifier = ImageClassifier(
        images=ImagesRepository(stack.images_table),
        media=MediaStore(stack.bucket),
        cache=ClassificationCache(stack.cache_table, model="fake-vl", prompt_version=PROMPT_VERSION),
        stats=StatsRepository(stack.stats_table),
        vision=VisionClassifier(provider, sleep=clock.sleep, random=lambda: 1.0),
        prices=Prices(per_1k_input=0, per_1k_output=0, currency="CNY"),
        max_distance=8,
        max_receive_count=3,
        clock=clock.monotonic,
    )
    invoked = clock.now
    ids = [_processed(stack, n) for n in range(BATCH_SIZE)]

    # WHEN one invocation classifies them one after the other
    spent = []
    for image_id in ids:
        started = clock.now
        with pytest.raises(ProviderError):
            classifier.classify(image_id, time_left=lambda: FUNCTION_TIMEOUT_S - (clock.now - invoked))
        spent.append(clock.now - started)

    # THEN every record had a retried call (two full 30 s calls each), none took more than its budget, and the
    # invocation ended with time to spare: each image says the model timed out, none "no time left"
    first_calls = [timeout for at, timeout in provider.calls if at in {invoked, invoked + spent[0]}]
    assert first_calls == [30.0, 30.0]
    assert len(provider.calls) >= 2 * BATCH_SIZE
    assert all(s <= RECORD_BUDGET_S for s in spent), spent
    assert clock.now - invoked <= FUNCTION_TIMEOUT_S - 20
    for image_id in ids:
        record = stack.image(image_id)
        assert (record["state"], record["reason"]) == ("classification_failed", "llm_timeout")
        assert "did not answer" in record["reason_message"]
