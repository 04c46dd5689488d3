"""Dead letters: what `photopipe local dlq list | show MESSAGE_ID | redrive [--queue NAME] [MESSAGE_ID ...]`
runs against the running stack (`DeadLetters.from_state(read_state(...))`).

A dead-letter queue is found from the queues themselves (the chains their `RedrivePolicy`s form: source
queue -> DLQ, consumed by the dead-letter function -> redrive queue, where letters rest), so a queue added
to the template is covered without a change here. Each message is shown with what it is about (the
image, job or batch named in its body) and the reason recorded on that image or job - what a person needs
to decide whether to replay it. Redrive sends the message back to its source queue and then deletes it
from the DLQ (at least once: every consumer is idempotent); it is written here because moto answers
`StartMessageMoveTask` with a 500, and it works the same against AWS.

Looking at a DLQ receives its messages (SQS has no "peek"): they are held for a few seconds and made
visible again at once; a DLQ has no redrive policy of its own, so nothing moves."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote_plus

from boto3.dynamodb.types import TypeDeserializer

_HOLD_S = 30  # how long a looked-at message is hidden before it is made visible again (at once, normally)
_ORIGINAL_PARTS = 4  # originals/{user_id}/{image_id}/{name}

SubjectKind = Literal["image", "job", "batch", "unknown"]


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str  # logical id in the template, e.g. ClassifyDeadLetterQueue
    url: str
    source: str  # the queue that redrives into it, e.g. ClassifyQueue
    source_url: str


@dataclass(frozen=True)
class Subject:
    """What a message is about, and what its record says now."""

    kind: SubjectKind
    id: str | None = None
    state: str | None = None
    reason: str | None = None
    reason_message: str | None = None


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    body: str
    sent_at: str | None
    receive_count: int
    subject: Subject

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "message_id": self.message_id,
            "sent_at": self.sent_at,
            "receive_count": self.receive_count,
            "subject": self.subject.__dict__,
            "body": self.body,
        }


@dataclass(frozen=True)
class _Received:
    message: dict[str, Any]
    queue: DeadLetterQueue


class DeadLetters:
    def __init__(
        self, *, sqs: Any, dynamodb: Any, queues: Mapping[str, str], tables: Mapping[str, str]
    ) -> None:
        """`queues`: logical id -> queue URL (every queue of the stack); `tables`: IMAGES_TABLE and
        JOBS_TABLE -> table name (to say what each message is about)."""
        self._sqs = sqs
        self._dynamodb = dynamodb
        self._queues = dict(queues)
        self._tables = dict(tables)
        self._deserializer = TypeDeserializer()

    @classmethod
    def from_state(cls, state: Any) -> DeadLetters:
        """From the running local stack's state (`photopipe_local.stack.read_state`)."""
        from photopipe_local.resources import AwsClients

        clients = AwsClients.for_endpoint(state.endpoint, state.region)
        queues = {
            logical_id: str(entry["ref"])
            for logical_id, entry in state.resources.items()
            if entry.get("type") == "AWS::SQS::Queue" and entry.get("ref")
        }
        tables = {k: state.environment[k] for k in ("IMAGES_TABLE", "JOBS_TABLE") if k in state.environment}
        return cls(sqs=clients.sqs, dynamodb=clients.dynamodb, queues=queues, tables=tables)

    # ------------------------------------------------------------------ the commands
    def dead_letter_queues(self) -> list[DeadLetterQueue]:
        """Where each consumed queue's failures come to rest, with the queue to replay them into.

        The redrive policies form chains: a source queue redrives into its DLQ, which the dead-letter
        function consumes (marking the image or job failed) and which redrives, in turn, into a redrive
        queue that nothing consumes. A letter rests at the end of its chain and goes back to its start."""
        by_arn = {self._arn(url): name for name, url in self._queues.items()}
        into: dict[str, str] = {}  # queue -> the queue its redrive policy names
        for source, source_url in sorted(self._queues.items()):
            attributes = self._sqs.get_queue_attributes(QueueUrl=source_url, AttributeNames=["RedrivePolicy"])
            policy = attributes.get("Attributes", {}).get("RedrivePolicy")
            if policy and (target := by_arn.get(json.loads(policy)["deadLetterTargetArn"])) is not None:
                into[source] = target
        redriven_into = set(into.values())
        found = []
        for start in sorted(set(into) - redriven_into):  # a chain's first queue: nothing redrives into it
            end, seen = into[start], {start}
            while end in into and end not in seen:
                seen.add(end)
                end = into[end]
            found.append(
                DeadLetterQueue(name=end, url=self._queues[end], source=start, source_url=self._queues[start])
            )
        return found

    def count(self, queue: DeadLetterQueue) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=queue.url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def list_letters(self, queue: str | None = None) -> list[DeadLetter]:
        """The dead letters of one DLQ (by logical id, or its source queue's), or of all of them."""
        held = self._receive(self._select(queue))
        try:
            return [self._describe(r) for r in held]
        finally:
            self._let_go(held)

    def show(self, message_id: str) -> DeadLetter:
        for letter in self.list_letters():
            if letter.message_id == message_id:
                return letter
        raise KeyError(f"no dead letter {message_id!r} in any dead-letter queue")

    def redrive(
        self, queue: str | None = None, message_ids: Collection[str] | None = None
    ) -> list[DeadLetter]:
        """Send dead letters back to their source queues (all of them, or those named); returns them."""
        held = self._receive(self._select(queue))
        moved: list[DeadLetter] = []
        try:
            for received in held:
                message = received.message
                if message_ids is not None and message["MessageId"] not in message_ids:
                    continue
                letter = self._describe(received)
                send: dict[str, Any] = {"QueueUrl": received.queue.source_url, "MessageBody": message["Body"]}
                if message.get("MessageAttributes"):
                    send["MessageAttributes"] = message["MessageAttributes"]
                self._sqs.send_message(**send)
                self._sqs.delete_message(QueueUrl=received.queue.url, ReceiptHandle=message["ReceiptHandle"])
                moved.append(letter)
        finally:  # what was not moved (not chosen, or after a failure) is visible again at once
            done = {m.message_id for m in moved}
            self._let_go([r for r in held if r.message["MessageId"] not in done])
        if message_ids is not None:
            missing = set(message_ids) - {m.message_id for m in moved}
            if missing:
                raise KeyError(f"not in the dead-letter queue(s): {', '.join(sorted(missing))}")
        return moved

    # ------------------------------------------------------------------ helpers
    def _select(self, queue: str | None) -> list[DeadLetterQueue]:
        queues = self.dead_letter_queues()
        if queue is None:
            return queues
        chosen = [q for q in queues if queue in (q.name, q.source)]
        if not chosen:
            known = ", ".join(q.name for q in queues) or "none"
            raise KeyError(f"no dead-letter queue {queue!r} (dead-letter queues: {known})")
        return chosen

    def _receive(self, queues: list[DeadLetterQueue]) -> list[_Received]:
        held: dict[str, _Received] = {}
        for queue in queues:
            while True:
                resp = self._sqs.receive_message(
                    QueueUrl=queue.url,
                    MaxNumberOfMessages=10,
                    VisibilityTimeout=_HOLD_S,
                    WaitTimeSeconds=0,
                    AttributeNames=["All"],
                    MessageAttributeNames=["All"],
                )
                messages = resp.get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    held.setdefault(message["MessageId"], _Received(message, queue))
        return list(held.values())

    def _let_go(self, held: list[_Received]) -> None:
        for received in held:
            self._sqs.change_message_visibility(
                QueueUrl=received.queue.url,
                ReceiptHandle=received.message["ReceiptHandle"],
                VisibilityTimeout=0,
            )

    def _describe(self, received: _Received) -> DeadLetter:
        message = received.message
        attributes = message.get("Attributes", {})
        sent = attributes.get("SentTimestamp")
        return DeadLetter(
            queue=received.queue.name,
            message_id=message["MessageId"],
            body=message["Body"],
            sent_at=datetime.fromtimestamp(int(sent) / 1000, UTC).isoformat(timespec="seconds")
            if sent
            else None,
            receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
            subject=self._subject(message["Body"]),
        )

    def _subject(self, body: str) -> Subject:
        try:
            data = json.loads(body)
        except ValueError:
            return Subject("unknown")
        if not isinstance(data, dict):
            return Subject("unknown")
        if "job_id" in data:
            return self._job(str(data["job_id"]))
        if "image_id" in data:
            return self._image(str(data["image_id"]))
        if "batch_id" in data:
            return Subject("batch", str(data["batch_id"]))
        for record in data.get("Records", []) if isinstance(data.get("Records"), list) else []:
            key = unquote_plus(str(record.get("s3", {}).get("object", {}).get("key", "")))
            parts = key.split("/")
            if len(parts) == _ORIGINAL_PARTS and parts[0] == "originals":
                return self._image(parts[2])
        return Subject("unknown")

    def _image(self, image_id: str) -> Subject:
        item = self._item("IMAGES_TABLE", {"image_id": {"S": image_id}})
        if item is None:
            return Subject("image", image_id)
        return Subject("image", image_id, item.get("state"), item.get("reason"), item.get("reason_message"))

    def _job(self, job_id: str) -> Subject:
        item = self._item("JOBS_TABLE", {"job_id": {"S": job_id}})
        if item is None:
            return Subject("job", job_id)
        error = item.get("error") or {}
        return Subject("job", job_id, item.get("state"), error.get("code"), error.get("message"))

    def _item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        if table not in self._tables:
            return None
        item = self._dynamodb.get_item(TableName=self._tables[table], Key=key, ConsistentRead=True).get(
            "Item"
        )
        return {k: self._deserializer.deserialize(v) for k, v in item.items()} if item else None

    def _arn(self, url: str) -> str:
        attributes = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(attributes["Attributes"]["QueueArn"])
