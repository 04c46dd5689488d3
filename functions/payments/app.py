"""Payments function: order checks (delayed messages the API queues with each order): asks WeChat Pay about
a pending order, credits one that was paid (its notify lost or late), closes one that expired unpaid."""

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.models import OrderCheckRecord
from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import order_checks

processor = BatchProcessor(EventType.SQS, model=OrderCheckRecord, raise_on_entire_batch_failure=False)


def record_handler(record: OrderCheckRecord) -> dict[str, Any]:
    order = order_checks().check_order(record.body.order_id)
    return {"order_id": record.body.order_id, "state": order.state.value if order else None}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
