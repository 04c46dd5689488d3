"""Sending work to an SQS queue."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from photopipe.adapters.aws import client as make_client
from photopipe.adapters.aws import translate

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class WorkQueue:
    def __init__(self, url: str, client: SQSClient | None = None) -> None:
        self.url = url
        self._sqs: SQSClient = client or make_client("sqs")

    def send(self, message: dict[str, Any]) -> None:
        try:
            self._sqs.send_message(QueueUrl=self.url, MessageBody=json.dumps(message, separators=(",", ":")))
        except (ClientError, BotoCoreError) as e:
            raise translate(e, f"sending to {self.url.rsplit('/', 1)[-1]}") from e
