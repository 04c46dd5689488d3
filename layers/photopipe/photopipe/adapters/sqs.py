"""An SQS queue, both sides: send work to it, and (for a long-running worker; Lambda's event source
mapping does this for the functions) long-poll, delete, extend or give back a message's visibility."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import client as make_client
from photopipe.adapters.aws import error_code, translate

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_RECEIPT_GONE = frozenset({"ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight"})


@dataclass(frozen=True)
class ReceivedMessage:
    message_id: str
    receipt_handle: str
    body: str
    receive_count: int


class Queue:
    def __init__(self, url: str, client: SQSClient | None = None) -> None:
        self.url = url
        self._sqs: SQSClient = client or make_client("sqs")

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def send(self, message: dict[str, Any], *, delay_seconds: int = 0) -> None:
        """`delay_seconds` (up to 900): the message becomes visible that much later."""
        body = json.dumps(message, separators=(",", ":"))
        try:
            if delay_seconds > 0:
                self._sqs.send_message(
                    QueueUrl=self.url, MessageBody=body, DelaySeconds=min(900, delay_seconds)
                )
            else:
                self._sqs.send_message(QueueUrl=self.url, MessageBody=body)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"sending to {self.name}") from e

    def receive(
        self, *, max_messages: int, wait_seconds: int, visibility_seconds: int
    ) -> list[ReceivedMessage]:
        try:
            resp = self._sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max(1, min(10, max_messages)),
                WaitTimeSeconds=max(0, min(20, wait_seconds)),
                VisibilityTimeout=visibility_seconds,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            )
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"receiving from {self.name}") from e
        return [
            ReceivedMessage(
                message_id=m["MessageId"],
                receipt_handle=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
            )
            for m in resp.get("Messages", [])
        ]

    def delete(self, message: ReceivedMessage) -> None:
        try:
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt_handle)
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"deleting a message from {self.name}") from e

    def set_visibility(self, message: ReceivedMessage, seconds: int) -> bool:
        """Extend (or, with 0, give back) a message; False when the receipt is no longer valid (the message
        was received again elsewhere or deleted)."""
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt_handle, VisibilityTimeout=seconds
            )
        except ClientError as e:
            if error_code(e) in _RECEIPT_GONE:
                return False
            raise translate(e, f"changing a message's visibility on {self.name}") from e
        except BotoCoreError as e:
            raise translate(e, f"changing a message's visibility on {self.name}") from e
        return True
