"""Notify function: the images, jobs, credits and orders table streams, with partial batch failures. Each
visible change becomes a small JSON message on its owner's WebSocket connections."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.models import TableChangeRecord
from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import live_updates

# A record that fails is reported by its sequence number: Lambda retries the batch from there (bisecting it
# on the way, as the event source mapping says) and stops at the DLQ after its retries.
processor = BatchProcessor(
    EventType.DynamoDBStreams, model=TableChangeRecord, raise_on_entire_batch_failure=False
)


def record_handler(record: TableChangeRecord) -> int:
    return live_updates().notify(record)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
