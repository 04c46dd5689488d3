"""Secrets from Secrets Manager (cached for a few minutes through Powertools parameters)."""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import BotoCoreError, ClientError

from photopipe.errors import ConfigurationError


def get_secret(secret_id: str, *, setting: str, max_age: int = 300, min_length: int = 32) -> str:
    """Fetch a secret string; `setting` names the variable that points at it, for the error message."""
    try:
        value = parameters.get_secret(secret_id, max_age=max_age)
    except (parameters.exceptions.GetParameterError, ClientError, BotoCoreError) as e:
        raise ConfigurationError(
            f"cannot read the secret named by {setting} ({secret_id}): {e}", code="secret_unavailable"
        ) from e
    if not isinstance(value, str) or len(value.strip()) < min_length:
        raise ConfigurationError(
            f"the secret named by {setting} must be a string of at least {min_length} characters",
            code="secret_invalid",
        )
    return value.strip()
