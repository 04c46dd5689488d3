"""Domain errors. Each carries a snake_case `code`, a message a person can act on, and the HTTP status the
API maps it to (in one place: `photopipe.api.app`). Adapters translate library errors into these with
`raise ... from e`."""

from __future__ import annotations

from typing import Any, ClassVar


def error_body(code: str, message: str) -> dict[str, Any]:
    """The one shape of every error the API answers: `{"error": {"code", "message"}}`."""
    return {"error": {"code": code, "message": message}}


class PhotopipeError(Exception):
    """Base class: everything the product raises on purpose."""

    status: ClassVar[int] = 500
    default_code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.context = context

    def to_body(self) -> dict[str, Any]:
        return error_body(self.code, self.message)


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


class ServiceUnavailableError(PhotopipeError):
    status = 503
    default_code = "service_unavailable"


class TransientError(PhotopipeError):
    """Worth retrying: a dependency was slow or throttled. Queue consumers let it propagate so the
    message is retried and, after the queue's maxReceiveCount, lands in the DLQ."""

    status = 503
    default_code = "transient_failure"


class ImageRejected(PhotopipeError):
    """The upload cannot be processed. `code` is the machine-readable reason recorded on the image
    (`unsupported_format`, `too_large`, `too_many_pixels`, `too_small`, `corrupt`, `empty`,
    `missing_object`); the original object is always kept."""

    status = 422
    default_code = "rejected"
