"""Classify function: processed photos from the classify queue, with partial batch failures."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.models import ClassifyRecord
from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import image_classifier

processor = BatchProcessor(EventType.SQS, model=ClassifyRecord, raise_on_entire_batch_failure=False)


def record_handler(record: ClassifyRecord, lambda_context: LambdaContext) -> dict[str, Any]:
    return image_classifier().classify(
        record.body.image_id,
        time_left=lambda: lambda_context.get_remaining_time_in_millis() / 1000,
        receive_count=record.receive_count,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
