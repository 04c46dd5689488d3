"""Exports function: writes a batch's ZIP of enhanced photos to S3, streamed (messages from the API)."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import exporter


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return exporter().handle_batch(event, context)
