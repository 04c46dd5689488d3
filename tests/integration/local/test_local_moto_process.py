"""moto as a `moto_server` child process (`LocalStack(moto_process=True)`): the same wiring, over HTTP."""

from __future__ import annotations

import uuid
from pathlib import Path

from photopipe_local.stack import LocalStack, reachable


def test_sqs_events_flow_through_moto_in_a_child_process(sqs_template: Path) -> None:
    # GIVEN the local stack with moto in its own process
    stack = LocalStack(
        sqs_template,
        stack_name=f"p{uuid.uuid4().hex[:8]}",
        serve_http=False,
        write_state=False,
        retry_delay_seconds=0,
        moto_process=True,
    )
    with stack:
        assert stack.clients is not None
        stack.wait_idle(20)  # the bucket's s3:TestEvent

        # WHEN a message arrives on a queue with an event source
        body = f"child-{uuid.uuid4().hex[:8]}"
        stack.clients.sqs.send_message(QueueUrl=stack.ref("WorkQueue"), MessageBody=body)
        stack.wait_idle(20)

        # THEN the handler ran against that moto and recorded what it saw
        item = stack.clients.dynamodb.get_item(
            TableName=stack.name("SeenTable"), Key={"pk": {"S": f"worker#{body}"}}
        )["Item"]
        assert item["function"] == {"S": stack.name("Worker")}
        endpoint = stack.endpoint

    # and stopping the stack stops the moto process
    assert not reachable(endpoint)
