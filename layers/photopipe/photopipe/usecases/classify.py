"""Classify: one processed photo → a category, from the exact cache (same bytes), the near-duplicate cache
(same picture re-encoded or resized) or, on a miss, one vision-LLM call on the 1440 px preview.

At-least-once delivery is expected: a classified image is never classified again, two concurrent misses
on one photo make one LLM call (a lock item in the cache table), and a failure is never cached. The SQS
edge is the handler's: this receives an image id, the time left and how often it was delivered."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from photopipe.adapters.classification_cache import ClassificationCache, Lock
from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.stats import StatsRepository
from photopipe.classification import ClassificationFailed, ProviderError, Usage, VisionClassifier
from photopipe.classification.neardup import bands, best_match
from photopipe.errors import BadRequestError, TransientError
from photopipe.models import (
    CATEGORY_LABELS,
    CLASSIFIABLE_STATES,
    RETRY_NOTE,
    CachedResult,
    Category,
    ClassificationSource,
    ImageClassification,
    ImageRecord,
    ImageState,
    utcnow_iso,
)
from photopipe.observability import logger, metrics, tracer

# Leave this much of the function's time for writing results after the LLM answered.
_SAFETY_MARGIN_S = 10.0
# What one record may take by default: a retried LLM call (two of the classifier's 30 s calls and the backoff
# between them) plus the safety margin. A batch gives each record this budget, so the records after a slow
# one still get theirs; the function's timeout is sized from it (template.yaml, ClassifyFunction).
RECORD_BUDGET_S = 75.0
# How long a duplicate delivery waits for the delivery that holds the lock before retrying later.
_MAX_WAIT_FOR_OTHER_S = 20.0


@dataclass(frozen=True)
class Prices:
    """Estimated model price, for the cost figures (per 1,000 tokens)."""

    per_1k_input: float
    per_1k_output: float
    currency: str

    def cost(self, usage: Usage) -> float:
        return usage.input_tokens / 1000 * self.per_1k_input + usage.output_tokens / 1000 * self.per_1k_output


def micros(amount: float) -> int:
    """Money is counted in millionths, as integers (DynamoDB ADD on exact numbers)."""
    return round(amount * 1_000_000)


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def near_duplicate(
    cache: ClassificationCache, phash: str, max_distance: int
) -> tuple[CachedResult, int] | None:
    """The closest cached photo whose perceptual hash shares a band with `phash` and lies within
    `max_distance` bits, with that distance (a few key lookups, never a scan)."""
    match = best_match(phash, cache.near_candidates(bands(phash)).items(), max_distance)
    if match is None:
        return None
    sha256, distance = match
    result = cache.get_exact(sha256)
    return (result, distance) if result else None


@dataclass
class ImageClassifier:
    images: ImagesRepository
    media: MediaStore
    cache: ClassificationCache
    stats: StatsRepository
    vision: VisionClassifier | None
    prices: Prices
    max_distance: int
    max_receive_count: int
    skipped_reason: str = "no vision model is configured"
    record_budget_s: float = RECORD_BUDGET_S
    clock: Callable[[], float] = time.monotonic

    @tracer.capture_method
    def classify(
        self, image_id: str, *, time_left: Callable[[], float], receive_count: int = 1
    ) -> dict[str, Any]:
        """Classify one photo within `record_budget_s` seconds and `time_left()` (the invocation's), whichever
        ends first. `receive_count`: how often this request was delivered (on the queue's last receive a
        failure is recorded as final)."""
        deadline = self.clock() + self.record_budget_s

        def budget_left() -> float:
            return min(time_left(), deadline - self.clock())

        return self._classify(image_id, time_left=budget_left, receive_count=receive_count)

    def _classify(
        self, image_id: str, *, time_left: Callable[[], float], receive_count: int
    ) -> dict[str, Any]:
        last_attempt = receive_count >= self.max_receive_count
        image = self.images.get(image_id)
        if image is None:
            logger.info("image deleted before classification", extra={"image_id": image_id})
            return {"outcome": "deleted"}
        if image.state == ImageState.CLASSIFIED:
            return {"outcome": "duplicate"}
        if image.state not in CLASSIFIABLE_STATES or not image.sha256:
            logger.warning(
                "image not ready for classification", extra={"image_id": image_id, "state": image.state}
            )
            return {"outcome": "ignored", "state": image.state.value}

        exact = self.cache.get_exact(image.sha256)
        if exact is not None:
            return self._from_cache(image, exact, ClassificationSource.EXACT_CACHE, None)
        if image.phash:
            near = near_duplicate(self.cache, image.phash, self.max_distance)
            if near is not None:
                return self._from_cache(image, near[0], ClassificationSource.NEAR_DUPLICATE, near[1])
        if self.vision is None:
            return self._skip(image)
        return self._call_llm(image, time_left=time_left, last_attempt=last_attempt)

    # ------------------------------------------------------------------ outcomes
    def _from_cache(
        self, image: ImageRecord, result: CachedResult, source: ClassificationSource, distance: int | None
    ) -> dict[str, Any]:
        self.cache.count_hit(result.sha256)
        hit = "exact_hits" if source == ClassificationSource.EXACT_CACHE else "near_hits"
        self._count(
            image, {"requests": 1, hit: 1, "saved_micro": micros(result.cost), f"cat_{result.category}": 1}
        )
        metrics.add_metric(
            name="ExactCacheHits" if source == ClassificationSource.EXACT_CACHE else "NearDuplicateHits",
            unit=MetricUnit.Count,
            value=1,
        )
        self._record(image, result.category, result.confidence, result.reason, source, distance)
        logger.info(
            "classified from cache",
            extra={
                "image_id": image.image_id,
                "source": source.value,
                "category": result.category,
                "distance": distance,
            },
        )
        return {"outcome": source.value, "category": result.category, "distance": distance}

    def _skip(self, image: ImageRecord) -> dict[str, Any]:
        self.images.transition(
            image.image_id,
            from_states=CLASSIFIABLE_STATES,
            to_state=ImageState.CLASSIFICATION_SKIPPED,
            set_fields={"reason": "no_classifier", "reason_message": self.skipped_reason},
        )
        self._count(image, {"requests": 1, "skipped": 1})
        logger.info("classification skipped", extra={"image_id": image.image_id})
        return {"outcome": "skipped"}

    def _call_llm(
        self, image: ImageRecord, *, time_left: Callable[[], float], last_attempt: bool
    ) -> dict[str, Any]:
        assert self.vision is not None
        assert image.sha256
        owner = uuid.uuid4().hex
        lock = self.cache.try_lock(image.sha256, owner=owner, lease_seconds=max(time_left(), 30.0))
        if lock != Lock.ACQUIRED:
            wait = (
                0.0
                if lock == Lock.DONE
                else min(_MAX_WAIT_FOR_OTHER_S, max(0.0, time_left() - _SAFETY_MARGIN_S))
            )
            result = self.cache.wait_for(image.sha256, timeout=wait)
            if result is None:
                raise TransientError("another delivery is classifying the same photo; this one will retry")
            return self._from_cache(image, result, ClassificationSource.EXACT_CACHE, None)
        if not image.preview_key:
            self.cache.release(image.sha256, owner=owner)
            raise BadRequestError("the image has no preview to classify", code="no_preview")
        try:
            with self.media.open(image.preview_key).body as body:
                preview = body.read()
            outcome = self.vision.classify(preview, time_left=lambda: time_left() - _SAFETY_MARGIN_S)
        except (ProviderError, ClassificationFailed) as e:
            self.cache.release(image.sha256, owner=owner)
            self._failed(image, e, last_attempt=last_attempt)
            raise
        except BaseException:
            self.cache.release(image.sha256, owner=owner)
            raise
        answer = outcome.answer
        cost = self.prices.cost(outcome.usage)
        self.cache.store(
            sha256=image.sha256,
            phash=image.phash,
            band_keys=bands(image.phash) if image.phash else [],
            category=answer.category.value,
            confidence=answer.confidence,
            reason=answer.reason,
            cost=cost,
        )
        self._count(
            image,
            {
                "requests": 1,
                "misses": 1,
                "llm_calls": outcome.llm_calls,
                "input_tokens": outcome.usage.input_tokens,
                "output_tokens": outcome.usage.output_tokens,
                "cost_micro": micros(cost),
                f"cat_{answer.category.value}": 1,
            },
        )
        metrics.add_metric(name="CacheMisses", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="LlmCalls", unit=MetricUnit.Count, value=outcome.llm_calls)
        metrics.add_metric(name="LlmInputTokens", unit=MetricUnit.Count, value=outcome.usage.input_tokens)
        metrics.add_metric(name="LlmOutputTokens", unit=MetricUnit.Count, value=outcome.usage.output_tokens)
        self._record(
            image, answer.category.value, answer.confidence, answer.reason, ClassificationSource.LLM, None
        )
        logger.info(
            "classified by the model",
            extra={
                "image_id": image.image_id,
                "category": answer.category.value,
                "model": outcome.model,
                "llm_calls": outcome.llm_calls,
                "input_tokens": outcome.usage.input_tokens,
                "output_tokens": outcome.usage.output_tokens,
            },
        )
        return {"outcome": "llm", "category": answer.category.value}

    def _failed(
        self, image: ImageRecord, error: ProviderError | ClassificationFailed, *, last_attempt: bool
    ) -> None:
        usage: Usage = getattr(error, "usage", None) or Usage()
        calls = int(getattr(error, "llm_calls", 0) or 0)
        self._count(
            image,
            {
                "requests": 1,
                "failures": 1,
                "llm_calls": calls,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cost_micro": micros(self.prices.cost(usage)),
            },
        )
        metrics.add_metric(name="ClassifyFailures", unit=MetricUnit.Count, value=1)
        retry = "" if last_attempt else RETRY_NOTE
        self.images.transition(
            image.image_id,
            from_states=CLASSIFIABLE_STATES,
            to_state=ImageState.CLASSIFICATION_FAILED,
            set_fields={"reason": error.code, "reason_message": f"{error.message}{retry}"},
        )
        logger.warning(
            "classification failed",
            extra={
                "image_id": image.image_id,
                "code": error.code,
                "detail": error.message,
                "last_attempt": last_attempt,
            },
        )

    # ------------------------------------------------------------------ helpers
    def _record(
        self,
        image: ImageRecord,
        category: str,
        confidence: float,
        reason: str,
        source: ClassificationSource,
        distance: int | None,
    ) -> None:
        zh, en = CATEGORY_LABELS[Category(category)]
        classification = ImageClassification(
            category=category,
            label_zh=zh,
            label_en=en,
            confidence=confidence,
            reason=reason,
            source=source,
            model=self.cache.model,
            prompt_version=self.cache.prompt_version,
            distance=distance,
            classified_at=utcnow_iso(),
        )
        self.images.transition(
            image.image_id,
            from_states=CLASSIFIABLE_STATES,
            to_state=ImageState.CLASSIFIED,
            set_fields={"classification": classification.model_dump(mode="json", exclude_none=True)},
            remove_fields=("reason", "reason_message"),
        )

    def _count(self, image: ImageRecord, counters: dict[str, int]) -> None:
        self.stats.add(today(), counters, user_id=image.user_id)
