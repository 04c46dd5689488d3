"""Classify: one processed photo → a category, from the exact cache (same bytes), the near-duplicate cache
(same picture re-encoded or resized) or, on a miss, one vision-LLM call on the 1440 px preview.

At-least-once delivery is expected: a classified image is never classified again, two concurrent misses
on one photo make one LLM call (a lock item in the cache table), and a failure is never cached. The SQS
edge is the handler's: this receives an image id, the time left and how often it was delivered.

Failures: a provider that is down, throttling or slow is retried (backoff in the call, then the queue
redelivers; on the last receive the image says why and the message goes to the DLQ). A model whose answers
stay invalid after the stricter retry is final: `classification_failed` with reason `invalid_answer`, the
message consumed, and a duplicate delivery does not call the model again. Any other failure on the last
receive (the preview gone, ...) is recorded on the image too (`classification_gave_up`) before the DLQ.

`classify_bytes` answers one photo sent straight to the API (the classify test, `POST /api/v1/classify`)
through the same caches, model call and daily counters; it records nothing on any image."""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from photopipe.adapters.classification_cache import ClassificationCache, Lock
from photopipe.adapters.images import ImagesRepository
from photopipe.adapters.s3 import MediaStore
from photopipe.adapters.stats import StatsRepository
from photopipe.classification import ClassificationFailed, ProviderError, Usage, VisionClassifier
from photopipe.classification.neardup import bands, best_match
from photopipe.errors import BadRequestError, PhotopipeError, ServiceUnavailableError, TransientError
from photopipe.imaging import Limits, read_original, transform
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
# Recorded on an image whose model answers stayed invalid: final, never retried by a redelivery.
INVALID_ANSWER = "invalid_answer"
GAVE_UP = "classification_gave_up"


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


@dataclass(frozen=True)
class Photo:
    """What classification needs of one photo: its hashes, whose it is (for the daily counters) and its
    1440 px preview, read only on a cache miss. `image_id` names it in the logs when it has one."""

    sha256: str
    phash: str | None
    user_id: str
    preview: Callable[[], bytes]
    image_id: str | None = None


@dataclass(frozen=True)
class Verdict:
    """A photo's category and where it came from."""

    category: str
    confidence: float
    reason: str
    source: ClassificationSource
    distance: int | None = None


@dataclass(frozen=True)
class DirectAnswer:
    """`classify_bytes`: the verdict plus what was learnt about the photo on the way."""

    verdict: Verdict
    format: str
    width: int
    height: int
    bytes: int
    sha256: str
    phash: str


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
    limits: Limits = field(default_factory=Limits)
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

        return self._attempt(image_id, time_left=budget_left, receive_count=receive_count)

    def _attempt(
        self, image_id: str, *, time_left: Callable[[], float], receive_count: int
    ) -> dict[str, Any]:
        """One delivery: any failure on the queue's last receive is recorded on the image before the DLQ."""
        last_attempt = receive_count >= self.max_receive_count
        try:
            return self._classify(image_id, time_left=time_left, last_attempt=last_attempt)
        except (ProviderError, ClassificationFailed):
            raise  # recorded on the image already
        except Exception as e:
            if last_attempt:
                self._gave_up(image_id, e, receive_count)
            raise

    def _classify(
        self, image_id: str, *, time_left: Callable[[], float], last_attempt: bool
    ) -> dict[str, Any]:
        image = self.images.get(image_id)
        if image is None:
            logger.info("image deleted before classification", extra={"image_id": image_id})
            return {"outcome": "deleted"}
        if image.state == ImageState.CLASSIFIED:
            return {"outcome": "duplicate"}
        if image.state == ImageState.CLASSIFICATION_FAILED and image.reason == INVALID_ANSWER:
            logger.info(
                "the model's answers were invalid already; not asked again", extra={"image_id": image_id}
            )
            return {"outcome": "duplicate", "state": image.state.value}
        if image.state not in CLASSIFIABLE_STATES or not image.sha256:
            logger.warning(
                "image not ready for classification", extra={"image_id": image_id, "state": image.state}
            )
            return {"outcome": "ignored", "state": image.state.value}

        photo = Photo(
            sha256=image.sha256,
            phash=image.phash,
            user_id=image.user_id,
            preview=lambda: self._preview_of(image),
            image_id=image.image_id,
        )
        try:
            verdict = self._resolve(photo, time_left=time_left)
        except ClassificationFailed as e:
            # Final: the stricter retry did not help either, so neither would a redelivery.
            self._failed(image, e, last_attempt=True, reason=INVALID_ANSWER)
            return {"outcome": "classification_failed", "reason": INVALID_ANSWER, "llm_calls": e.llm_calls}
        except ProviderError as e:
            self._failed(image, e, last_attempt=last_attempt)
            raise
        if verdict is None:
            return self._skip(image)
        self._record(image, verdict)
        if verdict.source == ClassificationSource.LLM:
            return {"outcome": "llm", "category": verdict.category}
        return {"outcome": verdict.source.value, "category": verdict.category, "distance": verdict.distance}

    @tracer.capture_method
    def classify_bytes(self, data: bytes, *, user_id: str, time_left: Callable[[], float]) -> DirectAnswer:
        """Classify a photo sent straight to the API: checked and hashed as ingest does (an image that
        ingest would reject raises `ImageRejected` with the same reason), then answered through the same
        caches, model call and counters as an uploaded photo. Nothing is stored but the cache entry."""
        with read_original(io.BytesIO(data), self.limits) as original:
            result = transform(original, self.limits)
        photo = Photo(
            sha256=result.sha256, phash=result.phash, user_id=user_id, preview=lambda: result.preview.data
        )
        verdict = self._resolve(photo, time_left=time_left)
        if verdict is None:
            raise ServiceUnavailableError(self.skipped_reason, code="classifier_unavailable")
        return DirectAnswer(
            verdict=verdict,
            format=result.format,
            width=result.width,
            height=result.height,
            bytes=result.bytes,
            sha256=result.sha256,
            phash=result.phash,
        )

    # ------------------------------------------------------------------ the cache, then the model
    def _resolve(self, photo: Photo, *, time_left: Callable[[], float]) -> Verdict | None:
        """Exact cache, near-duplicate cache, then the model; None when it missed and there is no model.
        Every answer (and every failure) is counted in the day's statistics."""
        exact = self.cache.get_exact(photo.sha256)
        if exact is not None:
            return self._hit(photo, exact, ClassificationSource.EXACT_CACHE, None)
        if photo.phash:
            near = near_duplicate(self.cache, photo.phash, self.max_distance)
            if near is not None:
                return self._hit(photo, near[0], ClassificationSource.NEAR_DUPLICATE, near[1])
        if self.vision is None:
            self._count(photo.user_id, {"requests": 1, "skipped": 1})
            return None
        return self._ask_model(photo, time_left=time_left)

    def _hit(
        self, photo: Photo, result: CachedResult, source: ClassificationSource, distance: int | None
    ) -> Verdict:
        self.cache.count_hit(result.sha256)
        hit = "exact_hits" if source == ClassificationSource.EXACT_CACHE else "near_hits"
        self._count(
            photo.user_id,
            {"requests": 1, hit: 1, "saved_micro": micros(result.cost), f"cat_{result.category}": 1},
        )
        metrics.add_metric(
            name="ExactCacheHits" if source == ClassificationSource.EXACT_CACHE else "NearDuplicateHits",
            unit=MetricUnit.Count,
            value=1,
        )
        logger.info(
            "classified from cache",
            extra={
                "image_id": photo.image_id,
                "source": source.value,
                "category": result.category,
                "distance": distance,
            },
        )
        return Verdict(result.category, result.confidence, result.reason, source, distance)

    def _ask_model(self, photo: Photo, *, time_left: Callable[[], float]) -> Verdict:
        assert self.vision is not None
        owner = uuid.uuid4().hex
        lock = self.cache.try_lock(photo.sha256, owner=owner, lease_seconds=max(time_left(), 30.0))
        if lock != Lock.ACQUIRED:
            wait = (
                0.0
                if lock == Lock.DONE
                else min(_MAX_WAIT_FOR_OTHER_S, max(0.0, time_left() - _SAFETY_MARGIN_S))
            )
            result = self.cache.wait_for(photo.sha256, timeout=wait)
            if result is None:
                raise TransientError("another delivery is classifying the same photo; this one will retry")
            return self._hit(photo, result, ClassificationSource.EXACT_CACHE, None)
        try:
            preview = photo.preview()
            outcome = self.vision.classify(preview, time_left=lambda: time_left() - _SAFETY_MARGIN_S)
        except (ProviderError, ClassificationFailed) as e:
            self.cache.release(photo.sha256, owner=owner)
            self._count_failure(photo, e)
            raise
        except BaseException:
            self.cache.release(photo.sha256, owner=owner)
            raise
        answer = outcome.answer
        cost = self.prices.cost(outcome.usage)
        self.cache.store(
            sha256=photo.sha256,
            phash=photo.phash,
            band_keys=bands(photo.phash) if photo.phash else [],
            category=answer.category.value,
            confidence=answer.confidence,
            reason=answer.reason,
            cost=cost,
        )
        self._count(
            photo.user_id,
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
        logger.info(
            "classified by the model",
            extra={
                "image_id": photo.image_id,
                "category": answer.category.value,
                "model": outcome.model,
                "llm_calls": outcome.llm_calls,
                "input_tokens": outcome.usage.input_tokens,
                "output_tokens": outcome.usage.output_tokens,
            },
        )
        return Verdict(answer.category.value, answer.confidence, answer.reason, ClassificationSource.LLM)

    def _count_failure(self, photo: Photo, error: ProviderError | ClassificationFailed) -> None:
        usage: Usage = getattr(error, "usage", None) or Usage()
        calls = int(getattr(error, "llm_calls", 0) or 0)
        self._count(
            photo.user_id,
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

    # ------------------------------------------------------------------ outcomes on an image record
    def _preview_of(self, image: ImageRecord) -> bytes:
        if not image.preview_key:
            raise BadRequestError("the image has no preview to classify", code="no_preview")
        with self.media.open(image.preview_key).body as body:
            return body.read()

    def _skip(self, image: ImageRecord) -> dict[str, Any]:
        self.images.transition(
            image.image_id,
            from_states=CLASSIFIABLE_STATES,
            to_state=ImageState.CLASSIFICATION_SKIPPED,
            set_fields={"reason": "no_classifier", "reason_message": self.skipped_reason},
        )
        logger.info("classification skipped", extra={"image_id": image.image_id})
        return {"outcome": "skipped"}

    def _failed(
        self,
        image: ImageRecord,
        error: ProviderError | ClassificationFailed,
        *,
        last_attempt: bool,
        reason: str | None = None,
    ) -> None:
        retry = "" if last_attempt else RETRY_NOTE
        self.images.transition(
            image.image_id,
            from_states=CLASSIFIABLE_STATES,
            to_state=ImageState.CLASSIFICATION_FAILED,
            set_fields={"reason": reason or error.code, "reason_message": f"{error.message}{retry}"},
        )
        logger.warning(
            "classification failed",
            extra={
                "image_id": image.image_id,
                "code": reason or error.code,
                "detail": error.message,
                "last_attempt": last_attempt,
            },
        )

    def _gave_up(self, image_id: str, error: Exception, attempts: int) -> None:
        """The queue's last receive failed for a reason other than the model: say so on the image (the
        message goes to the DLQ; a redrive retries it)."""
        detail = error.message if isinstance(error, PhotopipeError) else f"{type(error).__name__}: {error}"
        self.images.transition(
            image_id,
            from_states=CLASSIFIABLE_STATES,
            to_state=ImageState.CLASSIFICATION_FAILED,
            set_fields={
                "reason": GAVE_UP,
                "reason_message": f"classification failed after {attempts} attempts: {detail}. The message "
                "is in the classify dead-letter queue; redrive it once the cause is fixed.",
            },
        )
        logger.error(
            "giving up on classifying this photo; message goes to the DLQ",
            extra={"image_id": image_id, "error": detail},
            exc_info=error,
        )

    def _record(self, image: ImageRecord, verdict: Verdict) -> None:
        zh, en = CATEGORY_LABELS[Category(verdict.category)]
        classification = ImageClassification(
            category=verdict.category,
            label_zh=zh,
            label_en=en,
            confidence=verdict.confidence,
            reason=verdict.reason,
            source=verdict.source,
            model=self.cache.model,
            prompt_version=self.cache.prompt_version,
            distance=verdict.distance,
            classified_at=utcnow_iso(),
        )
        self.images.transition(
            image.image_id,
            from_states=CLASSIFIABLE_STATES,
            to_state=ImageState.CLASSIFIED,
            set_fields={"classification": classification.model_dump(mode="json", exclude_none=True)},
            remove_fields=("reason", "reason_message"),
        )

    def _count(self, user_id: str, counters: dict[str, int]) -> None:
        self.stats.add(today(), counters, user_id=user_id)
