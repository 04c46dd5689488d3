"""Domain errors. Each carries a snake_case `code`, a message a person can act on, and the HTTP status the
API maps it to (in one place: `photopipe.api.app`). Adapters translate library errors into these with
`raise ... from e`."""

from __future__ import annotations

from typing import Any, ClassVar


def error_body(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The one shape of every error the API answers: `{"error": {"code", "message"}}`, plus optional
    details named in the error schema (e.g. a quota's `limit`, `retry_after`, `resets_at`)."""
    return {
        "error": {"code": code, "message": message, **{k: v for k, v in details.items() if v is not None}}
    }


class PhotopipeError(Exception):
    """Base class: everything the product raises on purpose."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"
    # An expected refusal (a client error, or a 503 a caller can act on) is logged as business as usual,
    # without a stack trace; anything else is a fault, logged at ERROR with one.
    expected: ClassVar[bool | None] = None

    def __init__(self, message: str, *, code: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.context = context

    @property
    def is_expected(self) -> bool:
        return self.expected if self.expected is not None else self.status < 500

    def to_body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the error (e.g. `Retry-After`)."""
        return {}


class ConfigurationError(PhotopipeError):
    """A setting is missing or invalid; the message names the setting."""

    default_code = "configuration_error"


class BadRequestError(PhotopipeError):
    status = 400
    default_code = "bad_request"


class UnauthorizedError(PhotopipeError):
    status = 401
    default_code = "unauthorized"


class PaymentRequiredError(PhotopipeError):
    """Not enough credits; the message says how to buy more."""

    status = 402
    default_code = "insufficient_credits"


class ForbiddenError(PhotopipeError):
    status = 403
    default_code = "forbidden"


class NotFoundError(PhotopipeError):
    status = 404
    default_code = "not_found"


class ConflictError(PhotopipeError):
    status = 409
    default_code = "conflict"


class PayloadTooLargeError(PhotopipeError):
    status = 413
    default_code = "too_large"


class TooManyRequestsError(PhotopipeError):
    """A limit was reached: `limit` names it, `retry_after` (seconds) and `resets_at` (ISO-8601 UTC) say
    when it resets - both None for a limit that time does not reset (stored bytes: delete photos)."""

    status = 429
    default_code = "too_many_requests"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        limit: str,
        retry_after: int | None = None,
        resets_at: str | None = None,
    ) -> None:
        super().__init__(message, code=code, limit=limit, retry_after=retry_after, resets_at=resets_at)
        self.limit = limit
        self.retry_after = retry_after
        self.resets_at = resets_at

    def to_body(self) -> dict[str, Any]:
        return error_body(
            self.code, self.message, limit=self.limit, retry_after=self.retry_after, resets_at=self.resets_at
        )

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class ServiceUnavailableError(PhotopipeError):
    """A dependency the caller cannot fix is not there (no enhancement worker up): expected, retry later."""

    status = 503
    default_code = "service_unavailable"
    expected = True


class TransientError(PhotopipeError):
    """Worth retrying: a dependency was slow or throttled. Queue consumers let it propagate so the
    message is retried and, after the queue's maxReceiveCount, lands in the DLQ."""

    status = 503
    default_code = "transient_failure"
    expected = True


class ImageRejected(PhotopipeError):
    """The upload cannot be processed. `code` is the machine-readable reason recorded on the image
    (`unsupported_format`, `too_large`, `too_many_pixels`, `too_small`, `corrupt`, `empty`,
    `missing_object`); the original object is always kept."""

    status = 422
    default_code = "rejected"
