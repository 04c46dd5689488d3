"""One photo → one validated classification, within the caller's time budget.

Retryable provider errors (throttling, 5xx, timeouts, connection errors) are retried with full-jitter
exponential backoff, never sleeping past the budget. An answer outside the schema gets one retry with the
strict prompt; a second one fails the classification for good (`ClassificationFailed`): at most 2 model
calls for a photo whose answers stay invalid, and a category is never guessed."""

from __future__ import annotations

import random as _random
import time
from collections.abc import Callable
from dataclasses import dataclass

from photopipe.classification.answer import Answer, InvalidAnswer, parse_answer
from photopipe.classification.prompt import PROMPT_VERSION, build_prompt
from photopipe.classification.providers import ProviderError, ProviderReply, Usage, VisionProvider
from photopipe.errors import PhotopipeError
from photopipe.observability import logger


class ClassificationFailed(PhotopipeError):
    """The model answered, but not with a valid classification (twice): final, retrying would only burn
    more calls on the same answers. Carries what was spent."""

    status = 502
    default_code = "classification_failed"

    def __init__(self, message: str, *, usage: Usage, llm_calls: int) -> None:
        super().__init__(message, llm_calls=llm_calls)
        self.usage = usage
        self.llm_calls = llm_calls


@dataclass(frozen=True)
class Classification:
    answer: Answer
    usage: Usage  # all calls of this classification, the invalid answers included
    llm_calls: int  # calls attempted, failed ones included
    model: str


class VisionClassifier:
    """`time_left()` returns the seconds this classification may still use. Each call gets
    `min(max_call_timeout, time_left() - safety_margin)`; no call starts with less than
    `min_call_timeout` of it, and no backoff sleeps into that reserve."""

    def __init__(
        self,
        provider: VisionProvider,
        *,
        max_attempts: int = 4,
        base_delay: float = 0.5,
        max_delay: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        safety_margin: float = 1.0,
        max_call_timeout: float = 30.0,
        min_call_timeout: float = 2.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base_delay < 0 or max_delay < 0 or safety_margin < 0 or min_call_timeout <= 0:
            raise ValueError("delays, the safety margin and the minimum call timeout must not be negative")
        if max_call_timeout < min_call_timeout:
            raise ValueError("max_call_timeout must be at least min_call_timeout")
        self.provider = provider
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._sleep = sleep
        self._random = random
        self._margin = safety_margin
        self._max_call_timeout = max_call_timeout
        self._min_call_timeout = min_call_timeout

    @property
    def model(self) -> str:
        return self.provider.model

    def backoff_cap(self, retry: int) -> float:
        """The upper bound of the delay before retry number `retry` (0 for the first retry)."""
        return min(self._max_delay, self._base_delay * 2**retry)

    def classify(self, image_jpeg: bytes, *, time_left: Callable[[], float]) -> Classification:
        usage = Usage()
        calls = 0
        failures = 0
        strict = False
        last_error: ProviderError | None = None
        while True:
            timeout = min(self._max_call_timeout, time_left() - self._margin)
            if timeout < self._min_call_timeout:
                error = last_error or ProviderError(
                    f"no time left to call {self.provider.name}: {max(timeout, 0.0):.1f} s left, "
                    f"{self._min_call_timeout:.1f} s needed",
                    retryable=True,
                    code="llm_timeout",
                )
                raise self._spent(error, usage, calls)
            calls += 1
            started = time.monotonic()
            try:
                reply = self.provider.ask(image_jpeg, build_prompt(strict=strict), timeout=timeout)
            except ProviderError as e:
                self._log_failure(e, attempt=calls, strict=strict, started=started)
                self._spent(e, usage, calls)
                if not e.retryable:
                    raise
                failures += 1
                last_error = e
                room = time_left() - self._margin - self._min_call_timeout
                if failures >= self._max_attempts or room <= 0:
                    raise
                self._sleep(min(room, self._random() * self.backoff_cap(failures - 1)))
                continue
            usage += reply.usage
            try:
                answer = parse_answer(reply.text)
            except InvalidAnswer as e:
                self._log_reply(
                    reply, attempt=calls, strict=strict, started=started, outcome="invalid_answer"
                )
                if strict:
                    raise ClassificationFailed(
                        f"the model's answer was not a valid classification: {e.message}",
                        usage=usage,
                        llm_calls=calls,
                    ) from e
                strict = True
                continue
            self._log_reply(reply, attempt=calls, strict=strict, started=started, outcome="ok", answer=answer)
            return Classification(answer=answer, usage=usage, llm_calls=calls, model=reply.model)

    @staticmethod
    def _spent(error: ProviderError, usage: Usage, calls: int) -> ProviderError:
        error.usage = usage
        error.llm_calls = calls
        return error

    def _log_reply(
        self,
        reply: ProviderReply,
        *,
        attempt: int,
        strict: bool,
        started: float,
        outcome: str,
        answer: Answer | None = None,
    ) -> None:
        extra: dict[str, object] = {
            "provider": self.provider.name,
            "model": reply.model,
            "attempt": attempt,
            "strict_prompt": strict,
            "prompt_version": PROMPT_VERSION,
            "status": 200,
            "code": outcome,
            "ms": _ms_since(started),
            "request_id": reply.request_id,
            "input_tokens": reply.usage.input_tokens,
            "output_tokens": reply.usage.output_tokens,
        }
        if answer is not None:
            extra |= {"category": answer.category.value, "confidence": answer.confidence}
            logger.info("vision model answered", extra=extra)
        else:
            logger.warning("vision model answered outside the schema", extra=extra)

    def _log_failure(self, error: ProviderError, *, attempt: int, strict: bool, started: float) -> None:
        logger.warning(
            "vision model call failed",
            extra={
                "provider": self.provider.name,
                "model": self.provider.model,
                "attempt": attempt,
                "strict_prompt": strict,
                "status": error.http_status,
                "code": error.provider_code or error.code,
                "retryable": error.retryable,
                "ms": _ms_since(started),
                "request_id": error.request_id,
                "detail": error.message,
            },
        )


def _ms_since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
