"""WebSocket connections function: `$connect` (after the authorizer) records the connection under its user,
`$disconnect` forgets it."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.models import WebSocketConnectionEvent
from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import websocket_connections


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=WebSocketConnectionEvent)
def handler(event: WebSocketConnectionEvent, context: LambdaContext) -> dict[str, Any]:
    return websocket_connections().handle(event)
