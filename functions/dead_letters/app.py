"""Dead-letter function: marks the image or job of each message on the four DLQs failed, and keeps it."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.models import DeadLetterRecord
from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import dead_letters

processor = BatchProcessor(EventType.SQS, model=DeadLetterRecord, raise_on_entire_batch_failure=False)


def record_handler(record: DeadLetterRecord) -> str:
    return dead_letters().record(record.eventSourceARN, record.body)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
    # Every message is reported back as not done, so it stays for a redrive (photopipe.usecases.dead_letters):
    # the DLQ's own redrive policy moves it to its redrive queue; a failure to record is retried meanwhile.
    return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in event.get("Records", [])]}
