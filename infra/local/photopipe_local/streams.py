"""DynamoDB stream event source mappings, run as Lambda runs them (moto's streams answer
`get_shard_iterator`/`get_records` but invoke nothing): `StreamEventSource` reads each shard from the
template's StartingPosition, drops records the FilterCriteria reject (moto's own EventBridge pattern
matcher: Lambda's filter syntax), invokes the function with up to BatchSize records gathered within
MaximumBatchingWindowInSeconds, and settles the batch in order: a `batchItemFailures` sequence number
checkpoints before it and retries from it; a failed invocation is bisected (BisectBatchOnFunctionError) down
to the record at fault, retried MaximumRetryAttempts times, then described on the OnFailure SQS destination
and skipped, so the shard moves on.

Each read starts from a fresh iterator at the shard's checkpoint (the sequence number after the last settled
record), as Lambda's checkpoints do: moto swaps in a copy of its tables whenever a transaction is cancelled
(its rollback state), and an iterator taken before then reads the orphaned copy and never sees another
record. moto also keeps every iterator it hands out (~2 KB each, two a read), so an idle source reads once a
second, not Lambda's four times; for 3 s after records it reads every 0.1 s (a pipeline writes in bursts).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from moto.events.models import EventPattern

from photopipe_local.resources import LOCAL_ACCESS_KEY
from photopipe_local.runtime import LocalFunction, failed_message_ids, retry_delay_from_environment
from photopipe_local.template import PhysicalRegistry, Template, TemplateError

logger = logging.getLogger("photopipe_local.streams")

STARTING_POSITIONS = ("LATEST", "TRIM_HORIZON")


def is_stream_arn(arn: str) -> bool:
    return ":dynamodb:" in arn and "/stream/" in arn


@dataclass(frozen=True)
class StreamEventSpec:
    name: str  # the SAM event's name
    function: str  # logical id
    stream_arn: str
    batch_size: int = 100
    maximum_batching_window_seconds: int = 0
    starting_position: str = "LATEST"
    filters: tuple[str, ...] = ()  # FilterCriteria patterns (JSON text)
    report_batch_item_failures: bool = False
    bisect_on_error: bool = False
    maximum_retry_attempts: int = -1  # -1: until the record expires (Lambda's default)
    on_failure_queue_url: str | None = None
    enabled: bool = True


def stream_events(template: Template, physical: PhysicalRegistry) -> list[StreamEventSpec]:
    """The event source mappings that read a DynamoDB stream of the template's tables."""
    functions = {lid: physical[lid] for lid, _ in template.active_resources("AWS::Lambda::Function")}
    specs = []
    for lid, _ in template.active_resources("AWS::Lambda::EventSourceMapping"):
        if not is_stream_arn(arn := str((props := template.properties(lid, physical)).get("EventSourceArn"))):
            continue
        if not any(entry.attributes.get("StreamArn") == arn for entry in physical.values()):
            raise TemplateError(f"{lid}: {arn} is not the stream of a table in this template")
        target = str(props.get("FunctionName", ""))
        function = next((f for f, e in functions.items() if target in (e.name, e.attributes["Arn"])), "")
        if not function or (start := props.get("StartingPosition", "LATEST")) not in STARTING_POSITIONS:
            raise TemplateError(
                f"{lid}: only mappings to the template's functions from {STARTING_POSITIONS} run"
            )
        destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        queue = None if destination is None else physical.by_arn(str(destination))
        if destination is not None and (queue is None or queue.type != "AWS::SQS::Queue"):
            message = f"the OnFailure destination {destination} is not a queue of this template"
            raise TemplateError(f"{lid}: {message}")
        specs.append(
            StreamEventSpec(
                name=lid.removeprefix(function) or lid,  # SAM names the mapping {function}{event}
                function=function,
                stream_arn=arn,
                batch_size=int(props.get("BatchSize", 100)),
                maximum_batching_window_seconds=int(props.get("MaximumBatchingWindowInSeconds", 0)),
                starting_position=str(start),
                filters=tuple(
                    str(f["Pattern"]) for f in (props.get("FilterCriteria") or {}).get("Filters", [])
                ),
                report_batch_item_failures="ReportBatchItemFailures"
                in (props.get("FunctionResponseTypes") or []),
                bisect_on_error=str(props.get("BisectBatchOnFunctionError", "false")).lower() == "true",
                maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                on_failure_queue_url=None if queue is None else queue.ref,
                enabled=str(props.get("Enabled", "true")).lower() == "true",
            )
        )
    return specs


def _as_lambda_json(value: Any) -> Any:
    """A value boto3 parsed back to its JSON form (binary as base64, times as epoch seconds)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, datetime):
        return int(value.timestamp())
    if isinstance(value, dict):
        return {key: _as_lambda_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_as_lambda_json(item) for item in value]
    return value


def lambda_record(record: Mapping[str, Any], *, stream_arn: str) -> dict[str, Any]:
    """A record from GetRecords as Lambda puts it in a DynamoDB stream event's `Records`."""
    region = stream_arn.split(":")[3]
    return _as_lambda_json(record) | {
        "eventVersion": "1.1",
        "awsRegion": region,
        "eventSourceARN": stream_arn,
    }


class StreamEventSource(threading.Thread):
    """A DynamoDB stream event source mapping for one function event: a thread polling the stream's shards."""

    busy_poll_seconds, idle_poll_seconds = 0.1, 1.0
    hot_seconds = 3.0  # how long after records the source keeps reading fast (a pipeline writes in bursts)

    def __init__(
        self,
        function: LocalFunction,
        event: StreamEventSpec,
        streams: Any,  # a dynamodbstreams client
        sqs: Any,  # for the OnFailure destination
        *,
        retry_delay_seconds: int | None = None,  # None: $PHOTOPIPE_LOCAL_RETRY_DELAY_SECONDS, else 1
    ) -> None:
        super().__init__(name=f"{function.spec.logical_id}.{event.name}", daemon=True)
        self.function, self.event, self.streams, self.sqs = function, event, streams, sqs
        self.retry_delay_seconds = (
            retry_delay_from_environment() if retry_delay_seconds is None else retry_delay_seconds
        )
        self.patterns = [EventPattern.load(pattern) for pattern in event.filters]
        self.failed_records, self.discarded_records = 0, 0
        # shard id -> where its first record not yet settled is: (ShardIteratorType, SequenceNumber)
        self._checkpoints: dict[str, tuple[str, str]] = {}
        self._stopping = threading.Event()

    @staticmethod
    def client(endpoint: str | None, region: str) -> Any:
        session: Any = boto3.session.Session(LOCAL_ACCESS_KEY, LOCAL_ACCESS_KEY, region_name=region)
        config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=30)
        return session.client("dynamodbstreams", endpoint_url=endpoint, config=config)

    def start(self) -> None:
        """Take the shard iterators now (LATEST means: what is written from here on), then poll."""
        self.prime()
        super().start()

    def prime(self) -> None:
        """Checkpoint each open shard at the mapping's StartingPosition (LATEST: after its last record)."""
        description = self.streams.describe_stream(StreamArn=self.event.stream_arn)["StreamDescription"]
        for shard in description["Shards"]:
            if "EndingSequenceNumber" in (numbers := shard.get("SequenceNumberRange", {})):
                continue  # closed: moto's never are
            shard_id, checkpoint = shard["ShardId"], ("AT_SEQUENCE_NUMBER", numbers["StartingSequenceNumber"])
            if self.event.starting_position == "LATEST":
                records, following = self._read(self._iterator(shard_id, checkpoint), 1000)
                while records:  # read to the end, delivering nothing
                    checkpoint = ("AFTER_SEQUENCE_NUMBER", records[-1]["dynamodb"]["SequenceNumber"])
                    records, following = self._read(following, 1000) if following else ([], None)
            self._checkpoints[shard_id] = checkpoint

    def _iterator(self, shard_id: str, checkpoint: tuple[str, str]) -> str:
        kind, sequence_number = checkpoint
        arn = self.event.stream_arn
        response = self.streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard_id, ShardIteratorType=kind, SequenceNumber=sequence_number
        )
        return str(response["ShardIterator"])

    def stop(self) -> None:
        self._stopping.set()

    def backlog(self) -> int:
        """Records written but not yet settled (filtered out ones count until the poller passes them)."""
        checkpoints = list(self._checkpoints.items())
        return sum(len(self._read(self._iterator(shard, at), 1)[0]) for shard, at in checkpoints)

    def run(self) -> None:
        logger.info(
            "stream poller started", extra={"event_source": self.name, "stream": self.event.stream_arn}
        )
        last_seen = time.monotonic()
        while not self._stopping.is_set():
            try:
                if self.poll_once():
                    last_seen = time.monotonic()
            except (ClientError, BotoCoreError):
                logger.exception("stream poll failed; retrying", extra={"event_source": self.name})
            hot = time.monotonic() - last_seen < self.hot_seconds
            self._stopping.wait(self.busy_poll_seconds if hot else self.idle_poll_seconds)
        logger.info("stream poller stopped", extra={"event_source": self.name})

    def poll_once(self) -> int:
        """Read each shard once from its checkpoint (topping the batch up within the batching window), deliver
        what the filters keep, then move the checkpoint past it. Returns how many records were read."""
        seen = 0
        for shard_id, checkpoint in list(self._checkpoints.items()):
            records, following = self._read(self._iterator(shard_id, checkpoint), self.event.batch_size)
            deadline = time.monotonic() + self.event.maximum_batching_window_seconds
            while (
                following and records and len(records) < self.event.batch_size and time.monotonic() < deadline
            ):
                self._stopping.wait(0.1)
                more, later = self._read(following, self.event.batch_size - len(records))
                records, following = records + more, later if more else following
            if records and not self._deliver(shard_id, records):
                return seen  # stopping: the records are read again from the checkpoint next time
            seen += len(records)
            if records:
                self._checkpoints[shard_id] = (
                    "AFTER_SEQUENCE_NUMBER",
                    records[-1]["dynamodb"]["SequenceNumber"],
                )
            if following is None:  # the shard was closed (moto's never are): its records are all read
                del self._checkpoints[shard_id]
        return seen

    def _read(self, iterator: str, limit: int) -> tuple[list[dict[str, Any]], str | None]:
        response = self.streams.get_records(ShardIterator=iterator, Limit=limit)
        return list(response.get("Records", [])), response.get("NextShardIterator")

    def _wanted(self, record: dict[str, Any]) -> bool:
        event: Any = record  # what Lambda matches its filters against: the record as the function gets it
        return not self.patterns or any(pattern.matches_event(event) for pattern in self.patterns)

    def _deliver(self, shard_id: str, raw: list[dict[str, Any]]) -> bool:
        """Settle the records in order; False if the source stopped first."""
        records = [
            r for r in (lambda_record(r, stream_arn=self.event.stream_arn) for r in raw) if self._wanted(r)
        ]
        pending = deque([(records, 0)] if records else [])
        while pending:
            if self._stopping.is_set():
                return False
            batch, retries = pending.popleft()
            if (failed := self._invoke(batch)) is None:
                continue
            rest = batch[failed:]
            if failed > 0:  # checkpointed before the failure: retry from there
                pending.appendleft((rest, retries))
            elif self.event.bisect_on_error and len(rest) > 1:  # splitting is not a retry
                half = len(rest) // 2
                pending.extendleft([(rest[half:], retries), (rest[:half], retries)])
            elif self.event.maximum_retry_attempts < 0 or retries < self.event.maximum_retry_attempts:
                self._stopping.wait(self.retry_delay_seconds)
                pending.appendleft((rest, retries + 1))
            else:
                self._discard(shard_id, rest, invocations=retries + 1)
        return True

    def _invoke(self, batch: list[dict[str, Any]]) -> int | None:
        """Invoke the function; None when the batch succeeded, else the index of the first record to retry."""
        sequence_numbers = [record["dynamodb"]["SequenceNumber"] for record in batch]
        extra: dict[str, Any] = {"function": self.function.spec.logical_id, "event_source": self.event.name}
        extra["batch_size"], started = len(batch), time.monotonic()
        try:
            response = self.function.invoke({"Records": batch})
        except Exception:  # as Lambda: the batch failed, the poller goes on; the traceback is logged
            logger.exception("stream handler raised; the batch is retried", extra=extra)
            failed: set[str] = set(sequence_numbers)
        else:
            failed, problem = set(), None
            if self.event.report_batch_item_failures:
                failed, problem = failed_message_ids(response, sequence_numbers)
            if problem is not None:
                logger.error(
                    "malformed partial batch response; the batch is retried",
                    extra=extra | {"problem": problem},
                )
        self.failed_records += len(failed)
        extra |= {"failures": len(failed), "duration_ms": round(1000 * (time.monotonic() - started))}
        logger.info("stream batch processed", extra=extra)
        return min(sequence_numbers.index(s) for s in failed) if failed else None

    def _discard(self, shard_id: str, batch: list[dict[str, Any]], *, invocations: int) -> None:
        """Skip records that failed every retry, described (not copied) on the OnFailure destination."""
        self.discarded_records += len(batch)
        first, last = batch[0]["dynamodb"], batch[-1]["dynamodb"]
        info = {"shardId": shard_id, "startSequenceNumber": first["SequenceNumber"], "batchSize": len(batch)}
        info |= {"endSequenceNumber": last["SequenceNumber"], "streamArn": self.event.stream_arn}
        for key, record in (("First", first), ("Last", last)):
            arrival = datetime.fromtimestamp(record.get("ApproximateCreationDateTime", 0), UTC)
            info[f"approximateArrivalOf{key}Record"] = arrival.isoformat(timespec="milliseconds").replace(
                "+00:00", "Z"
            )
        message = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": self.function.spec.arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": invocations,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "version": "1.0",
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "DDBStreamBatchInfo": info,
        }
        extra = {
            "event_source": self.name,
            "records": len(batch),
            "first_sequence_number": info["startSequenceNumber"],
        }
        if (queue_url := self.event.on_failure_queue_url) is None:
            logger.error(
                "stream records failed every retry and were dropped (no OnFailure destination)", extra=extra
            )
            return
        self.sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))
        logger.error("stream records failed every retry; described on the OnFailure destination", extra=extra)
