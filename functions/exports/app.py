"""Exports function: writes a batch's ZIP of enhanced photos to S3, streamed (messages from the API)."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.models import ExportRecord
from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import exporter

processor = BatchProcessor(EventType.SQS, model=ExportRecord, raise_on_entire_batch_failure=False)


def record_handler(record: ExportRecord) -> dict[str, Any]:
    return exporter().export(record.body.user_id, record.body.batch_id)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
