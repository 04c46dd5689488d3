"""Classify function: processed photos from the classify queue, with partial batch failures."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import image_classifier


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return image_classifier().handle_batch(event, context)
