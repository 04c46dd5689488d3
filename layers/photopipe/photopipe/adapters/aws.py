"""Shared helpers for AWS adapters: error translation and client construction."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

from photopipe.errors import PhotopipeError, TransientError

# Standard retry mode with a few attempts: throttling and 5xx are retried by botocore before we see them.
BOTO_CONFIG = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=5, read_timeout=30)
# The one S3 configuration. botocore still presigns S3 with Signature Version 2 unless told otherwise, and S3
# refuses SigV2 on buckets created after June 2020: every presigned POST and GET must be SigV4.
S3_CONFIG = BOTO_CONFIG.merge(Config(signature_version="s3v4"))
_SERVICE_CONFIG = {"s3": S3_CONFIG}

_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "InternalError",
        "ServiceUnavailable",
        "SlowDown",
        "RequestTimeout",
        "TransactionInProgressException",
    }
)


_SESSION_LOCK = threading.Lock()  # a boto3 session is not thread-safe; the clients it makes are


@cache
def session() -> boto3.session.Session:
    """The execution environment's one boto3 session. Its clients share the models it has loaded: a session
    of their own each cost a cold start the same JSON files parsed again (a few hundred ms per adapter).
    `reset_session()` forgets it (tests that switch credentials or endpoints, the local stack's stop)."""
    return boto3.session.Session()


def reset_session() -> None:
    session.cache_clear()


def client(service: str) -> Any:
    """A boto3 client with the project's retry config (and, for S3, SigV4 signing). Endpoints come from
    boto3's own AWS_ENDPOINT_URL handling, so nothing here knows whether it talks to AWS or the local stack."""
    config = _SERVICE_CONFIG.get(service, BOTO_CONFIG)
    with _SESSION_LOCK:
        return session().client(service, config=config)  # type: ignore[call-overload]


def resource(service: str) -> Any:
    """A boto3 resource (DynamoDB's `Table`s) with the project's retry config, from the same session."""
    with _SESSION_LOCK:
        return session().resource(service, config=BOTO_CONFIG)  # type: ignore[call-overload]


def error_code(e: ClientError) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))


def translate(e: Exception, what: str) -> PhotopipeError:
    """Map a botocore failure to a domain error (transient ones are retried by the queue)."""
    if isinstance(e, ClientError):
        code = error_code(e)
        status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientError(f"{what} failed temporarily ({code or status}); it will be retried")
        return PhotopipeError(f"{what} failed: {code}: {e.response.get('Error', {}).get('Message', '')}")
    if isinstance(e, ConnectionError | ReadTimeoutError | BotoCoreError):
        return TransientError(f"{what} failed temporarily ({type(e).__name__}); it will be retried")
    raise TypeError(f"not an AWS error: {e!r}")
