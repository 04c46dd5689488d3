"""Ingest function: S3 ObjectCreated notifications from the ingest queue, with partial batch failures."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.models import IngestRecord
from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import ingestor

# A record that is not an S3 notification fails alone; a batch where every record failed is still reported
# item by item, so the retry and DLQ accounting is the same whatever the batch's mix.
processor = BatchProcessor(EventType.SQS, model=IngestRecord, raise_on_entire_batch_failure=False)


def record_handler(record: IngestRecord) -> None:
    ingestor().ingest(record.body.objects(), receive_count=record.receive_count)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    ingestor().bind(context)
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
