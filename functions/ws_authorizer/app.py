"""WebSocket authorizer: the `$connect` REQUEST authorizer. Allows the connection for the user whose JWT is in
the `token` query string (the HTTP API's rules); any other token fails the call with "Unauthorized", which
API Gateway answers with 401."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from photopipe.models import WebSocketAuthorizerEvent
from photopipe.observability import logger, metrics, tracer
from photopipe.wiring import websocket_authorizer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=WebSocketAuthorizerEvent)
def handler(event: WebSocketAuthorizerEvent, context: LambdaContext) -> dict[str, Any]:
    return websocket_authorizer().authorize(event.token, event.method_arn)
