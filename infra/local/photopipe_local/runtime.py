"""Run Lambda handlers in this process as Lambda would: `LocalFunction` (a module name per function and
execution environment, a `LambdaContext`, one invocation at a time per environment) and `SqsEventSource`, the
event source mapping: it long-polls a queue, honours `ReportBatchItemFailures`, deletes what succeeded and
makes what failed visible again after a short retry delay, so the queue's redrive policy moves poison
messages to its DLQ after `maxReceiveCount`, with up to MaximumConcurrency batches in flight.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from unittest import mock

from botocore.exceptions import BotoCoreError, ClientError

from photopipe_local.resources import LOCAL_ACCESS_KEY
from photopipe_local.template import FunctionSpec, SqsEventSpec

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

logger = logging.getLogger("photopipe_local.runtime")

RETRY_DELAY_ENV, SQS_RECEIVE_MAX = "PHOTOPIPE_LOCAL_RETRY_DELAY_SECONDS", 10
# Execution environments per function, and so batches in flight per SQS event source mapping, at most
# (Lambda's are ReservedConcurrentExecutions and ScalingConfig.MaximumConcurrency; a laptop has fewer cores).
CONCURRENCY_ENV = "PHOTOPIPE_LOCAL_CONCURRENCY"
# Removed from the process environment while the stack runs: they would point boto3 somewhere else
# (profiles, session tokens, per-service endpoints) or change Powertools' behaviour (POWERTOOLS_DEV).
REMOVED_ENVIRONMENT = {"POWERTOOLS_DEV", "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN"}
REMOVED_ENVIRONMENT.add("AWS_SECURITY_TOKEN")
Handler = Callable[[Any, Any], Any]


class EnvironmentConflictError(Exception):
    """Two functions set the same variable to different values; in-process they would share it."""


class FunctionLoadError(Exception):
    """A handler module could not be imported; the message names the function and file."""


def functions_environment(functions: Sequence[FunctionSpec]) -> dict[str, str]:
    """The union of the functions' environments. They all run in this process and share `os.environ`, so
    a variable two functions set differently is an error, not a coin toss."""
    union: dict[str, str] = {}
    owner: dict[str, str] = {}
    for function in functions:
        for key, value in function.environment.items():
            if union.setdefault(key, value) != value:
                raise EnvironmentConflictError(
                    f"environment variable {key} is {union[key]!r} in {owner[key]} but {value!r} in "
                    f"{function.logical_id}; the local stack runs every function in one process, so give "
                    "them different variable names (or the same value)"
                )
            owner.setdefault(key, function.logical_id)
    return union


def local_environment(
    endpoint: str, region: str, functions: Sequence[FunctionSpec], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """What the local stack sets in `os.environ`: AWS plumbing, the functions' variables, then overrides."""
    environment = {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": region, "AWS_REGION": region}
    environment |= {"AWS_ACCESS_KEY_ID": LOCAL_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": LOCAL_ACCESS_KEY}
    environment |= functions_environment(functions)
    environment["POWERTOOLS_TRACE_DISABLED"] = "true"  # no X-Ray daemon on a laptop
    environment.setdefault("POWERTOOLS_METRICS_NAMESPACE", "photopipe-local")
    return environment | dict(overrides or {})


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` with `values` set and the interfering variables removed, all of it restored on exit
    (`mock.patch.dict` puts the whole mapping back)."""
    with mock.patch.dict(os.environ, values):
        for key in [k for k in os.environ if k in REMOVED_ENVIRONMENT or k.startswith("AWS_ENDPOINT_URL_")]:
            if key not in values:
                del os.environ[key]
        yield


def retry_delay_from_environment() -> int:
    if not (raw := os.environ.get(RETRY_DELAY_ENV, "1")).isdigit() or int(raw) > 43200:
        raise ValueError(f"{RETRY_DELAY_ENV} must be whole seconds, 0 to 43200 (SQS's limit): {raw!r}")
    return int(raw)


def machine_concurrency() -> int:
    """`photopipe local run`'s default concurrency: one environment per CPU core, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


def concurrency_from_environment(default: int = 1) -> int:
    if not (raw := os.environ.get(CONCURRENCY_ENV) or str(default)).isdigit() or int(raw) < 1:
        raise ValueError(f"{CONCURRENCY_ENV} must be a whole number of at least 1: {raw!r}")
    return int(raw)


class LambdaContext:
    """The context object Lambda passes to a Python handler (the attributes handlers and Powertools use)."""

    def __init__(self, function: FunctionSpec, *, request_id: str | None = None) -> None:
        self.function_name, self.function_version = function.name, "$LATEST"
        self.invoked_function_arn, self.memory_limit_in_mb = function.arn, function.memory_size
        self.aws_request_id = request_id or str(uuid.uuid4())
        self.log_group_name = function.log_group or f"/aws/lambda/{function.name}"
        self.log_stream_name = f"{datetime.now(UTC):%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = self.client_context = self.tenant_id = None
        self._deadline = time.monotonic() + function.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def module_name_for(logical_id: str) -> str:
    return f"photopipe_fn_{logical_id}"


def load_handler(function: FunctionSpec, module_name: str | None = None) -> Handler:
    """Import the function's handler module afresh under a name unique to the function."""
    path, lid = function.module_path, function.logical_id
    name = module_name or module_name_for(lid)
    if not path.is_file():
        raise FunctionLoadError(f"{lid}: handler module {path} does not exist (Handler {function.handler})")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None  # a .py path always has a spec and a loader
    assert spec.loader is not None
    module = sys.modules[name] = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as e:
        sys.modules.pop(name, None)
        sibling = function.code_uri / f"{(e.name or '').split('.')[0]}.py"
        hint = f"; {sibling.name} sits next to the handler, but functions share one process locally, so "
        hint += "shared code belongs in the photopipe package (the layer)"
        hint = hint if sibling.is_file() else ""
        raise FunctionLoadError(f"{lid}: importing {path} failed: {e}{hint}") from e
    except Exception as e:
        # Whatever the module raised at import time (a missing setting, a syntax error): reported with the
        # function's name; the original exception and its traceback stay attached as the cause.
        sys.modules.pop(name, None)
        raise FunctionLoadError(f"{lid}: importing {path} failed: {type(e).__name__}: {e}") from e
    if not callable(handler := getattr(module, function.handler_function, None)):
        raise FunctionLoadError(f"{lid}: {path} has no callable {function.handler_function!r}")
    return handler


class LocalFunction:
    """One function's warm execution environments, each running one invocation at a time. Up to
    `concurrency` of them exist, each made on first need by `loader(n)` (a cold start: `load()` imports the
    handler module afresh under its own name, so module state such as a `BatchProcessor` is the environment's
    own; the photopipe package and its cached clients are shared, as they are between functions here)."""

    def __init__(
        self,
        spec: FunctionSpec,
        handler: Handler,
        *,
        concurrency: int = 1,
        loader: Callable[[int], Handler] | None = None,
    ) -> None:
        self.spec, self.handler, self._loader = spec, handler, loader
        self.concurrency = max(1, concurrency) if loader is not None else 1
        self.module_name, self.environments = module_name_for(spec.logical_id), 1
        self._idle, self._available = [handler], threading.Condition()

    @classmethod
    def load(
        cls, spec: FunctionSpec, module_name: str | None = None, *, concurrency: int = 1
    ) -> LocalFunction:
        name = module_name or module_name_for(spec.logical_id)
        loader: Callable[[int], Handler] = lambda n: load_handler(spec, f"{name}_{n}")  # noqa: E731
        function = cls(spec, load_handler(spec, name), concurrency=concurrency, loader=loader)
        function.module_name = name
        return function

    def unload(self) -> None:
        for n in range(self.environments):
            sys.modules.pop(f"{self.module_name}_{n}" if n else self.module_name, None)

    def invoke(self, event: Any, *, request_id: str | None = None) -> Any:
        """Invoke the handler in an idle environment (waiting for one while `concurrency` are busy); its
        exception propagates to the caller (who decides what failure means)."""
        handler = self._acquire()
        started = time.monotonic()
        try:
            return handler(event, LambdaContext(self.spec, request_id=request_id))
        finally:
            with self._available:
                self._idle.append(handler)
                self._available.notify()
            if (elapsed := time.monotonic() - started) > self.spec.timeout:
                extra = {"function": self.spec.logical_id, "timeout_s": self.spec.timeout}
                message = "invocation ran past the function's Timeout; Lambda would have stopped it"
                logger.warning(message, extra=extra | {"duration_ms": round(elapsed * 1000)})

    def _acquire(self) -> Handler:
        with self._available:
            while not self._idle and self.environments >= self.concurrency:
                self._available.wait()
            if self._idle:
                return self._idle.pop()  # the most recently used: as few environments stay warm as will do
            self.environments += 1
            number = self.environments - 1
        assert self._loader is not None  # a second environment only with a loader
        try:
            return self._loader(number)  # outside the lock: the other environments keep serving
        except BaseException:
            with self._available:
                self.environments -= 1
                self._available.notify()
            raise


# ---------------------------------------------------------------------------------------------- SQS


def _message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {"stringListValues": list(value.get("StringListValues", []))}
    converted["binaryListValues"] = [base64.b64encode(v).decode() for v in value.get("BinaryListValues", [])]
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode()
    return converted | {"dataType": value["DataType"]}


def sqs_record(message: MessageTypeDef, *, queue_arn: str, region: str) -> dict[str, Any]:
    """A message from ReceiveMessage as Lambda puts it in an SQS event's `Records`."""
    attributes = {k: _message_attribute(v) for k, v in message.get("MessageAttributes", {}).items()}
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def failed_message_ids(response: Any, message_ids: Sequence[str]) -> tuple[set[str], str | None]:
    """Lambda's reading of a partial batch response: the ids to retry, and why the whole batch failed (None
    when the response is well formed). An absent, null or empty `batchItemFailures` means success."""
    everything = set(message_ids)
    if not isinstance(response, dict) or response.get("batchItemFailures") is None:
        return set(), None
    if not isinstance(failures := response["batchItemFailures"], list):
        return everything, f"batchItemFailures is not a list: {failures!r}"
    failed: set[str] = set()
    for item in failures:
        identifier = item.get("itemIdentifier") if isinstance(item, dict) else None
        if not isinstance(identifier, str) or not identifier:
            return everything, f"batchItemFailures entry without an itemIdentifier: {item!r}"
        if identifier not in everything:
            return everything, f"batchItemFailures names {identifier!r}, which is not in the batch"
        failed.add(identifier)
    return failed, None


class SqsEventSource(threading.Thread):
    """An SQS event source mapping for one function event: a thread polling the queue. With `concurrency`
    above 1 (the mapping's ScalingConfig.MaximumConcurrency, as far as the local stack allows) it adds a
    poller, each with its own batch in flight, whenever a receive finds messages, up to that many; an added
    poller stops at its first empty receive, as Lambda scales its pollers with the backlog."""

    poll_wait_seconds = 1  # how long a receive waits for the first message: the poller stops within it

    def __init__(
        self,
        function: LocalFunction,
        event: SqsEventSpec,
        queue_url: str,
        sqs: SQSClient,
        *,
        region: str | None = None,  # the queue's, from its ARN unless given
        retry_delay_seconds: int | None = None,  # None: $PHOTOPIPE_LOCAL_RETRY_DELAY_SECONDS, else 1
        concurrency: int = 1,  # batches in flight at most
    ) -> None:
        super().__init__(name=f"{function.spec.logical_id}.{event.name}", daemon=True)
        self.function, self.event, self.queue_url, self.sqs = function, event, queue_url, sqs
        self.region = region or event.queue_arn.split(":")[3]
        if retry_delay_seconds is None:
            retry_delay_seconds = retry_delay_from_environment()
        self.retry_delay_seconds, self.concurrency = retry_delay_seconds, max(1, concurrency)
        self.busy, self._stopping, self.failed_records = threading.Event(), threading.Event(), 0
        self._counts, self._in_flight, self._added = threading.Lock(), 0, list[threading.Thread]()

    def stop(self) -> None:
        self._stopping.set()

    def backlog(self) -> int:
        """Messages visible, in flight or delayed in the queue (moto keeps these counts exact)."""
        kinds = ("Messages", "MessagesNotVisible", "MessagesDelayed")
        names: Any = [f"ApproximateNumberOf{kind}" for kind in kinds]
        response = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=names)
        return sum(int(value) for value in response["Attributes"].values())

    def run(self) -> None:
        logger.info("sqs poller started", extra={"event_source": self.name, "queue": self.queue_url})
        while not self._stopping.is_set():
            self._poll_guarded()
        with self._counts:  # no poller is added once stopping
            added = list(self._added)
        for poller in added:
            poller.join()
        logger.info("sqs poller stopped", extra={"event_source": self.name})

    def _poll_guarded(self) -> int:
        try:
            return self.poll_once()
        except (ClientError, BotoCoreError):
            if not self._stopping.is_set():
                logger.exception("sqs poll failed; retrying", extra={"event_source": self.name})
                self._stopping.wait(1)
            return 0

    def _add_poller(self) -> None:
        """Messages are waiting: one more poller, unless `concurrency` already poll."""
        with self._counts:
            self._added = [poller for poller in self._added if poller.is_alive()]
            if len(self._added) + 1 >= self.concurrency or self._stopping.is_set():
                return
            poller = threading.Thread(target=self._poll_while_busy, name=f"{self.name}+", daemon=True)
            self._added.append(poller)
            poller.start()

    def _poll_while_busy(self) -> None:
        while not self._stopping.is_set() and self._poll_guarded():
            pass

    def _receive(self, count: int, wait: int) -> list[MessageTypeDef]:
        most, every = max(1, min(SQS_RECEIVE_MAX, count)), ["All"]
        options: Any = {"AttributeNames": every, "MessageAttributeNames": every, "WaitTimeSeconds": wait}
        response = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=most, **options)
        return response.get("Messages", [])

    def _count_in_flight(self, change: int) -> None:
        with self._counts:
            self._in_flight += change
            (self.busy.set if self._in_flight else self.busy.clear)()

    def poll_once(self) -> int:
        """Receive one batch (waiting up to `poll_wait_seconds` for the first message), invoke the function
        with it and settle the messages. Returns the batch size (0 when the queue was empty)."""
        if not (first := self._receive(self.event.batch_size, self.poll_wait_seconds)):
            return 0
        self._count_in_flight(+1)  # only once there is a batch: until then the queue itself counts them
        try:
            if self.concurrency > 1:
                self._add_poller()
            batch = self._collect_batch(first)
            if self._stopping.is_set():
                self._settle(batch, visibility=0)  # hand them back untouched
                return 0
            self._process(batch)
            return len(batch)
        finally:
            self._count_in_flight(-1)

    def _collect_batch(self, first: list[MessageTypeDef]) -> list[MessageTypeDef]:
        """Top up the first messages to BatchSize within MaximumBatchingWindowInSeconds."""
        batch: dict[str, MessageTypeDef] = {m["MessageId"]: m for m in first}
        deadline = time.monotonic() + self.event.maximum_batching_window_seconds
        while len(batch) < self.event.batch_size and not self._stopping.is_set():
            wait = 1 if (remaining := deadline - time.monotonic()) >= 1 else 0
            more = self._receive(self.event.batch_size - len(batch), wait)
            batch.update({m["MessageId"]: m for m in more})
            if not more and remaining <= 0:
                break
            if not more and wait == 0:
                self._stopping.wait(min(remaining, 0.1))
        return list(batch.values())

    def _process(self, messages: list[MessageTypeDef]) -> None:
        records = [sqs_record(m, queue_arn=self.event.queue_arn, region=self.region) for m in messages]
        ids, started = [r["messageId"] for r in records], time.monotonic()
        extra: dict[str, Any] = {"function": self.function.spec.logical_id, "event_source": self.event.name}
        sent = [int(r["attributes"]["SentTimestamp"]) for r in records if "SentTimestamp" in r["attributes"]]
        extra["oldest_message_age_ms"] = round(time.time() * 1000) - min(sent) if sent else None
        try:
            response = self.function.invoke({"Records": records})
        except Exception as e:
            # Protective catch, as Lambda's own: a handler's exception fails the batch but never the poller.
            # The traceback is logged; the messages come back after the retry delay and, past the queue's
            # maxReceiveCount, land in its DLQ.
            logger.exception("sqs handler raised; the whole batch is retried", extra=extra)
            failed, extra["error"] = set(ids), f"{type(e).__name__}: {e}"
        else:
            failed, problem = set[str](), None
            if self.event.report_batch_item_failures:
                failed, problem = failed_message_ids(response, ids)
            if problem is not None:
                message = "malformed partial batch response; the whole batch is retried"
                logger.error(message, extra=extra | {"problem": problem})
        with self._counts:
            self.failed_records += len(failed)
        self._settle([m for m in messages if m["MessageId"] not in failed])
        self._settle([m for m in messages if m["MessageId"] in failed], visibility=self.retry_delay_seconds)
        extra |= {"batch_size": len(records), "failures": len(failed)}
        extra["duration_ms"] = round(1000 * (time.monotonic() - started))
        logger.info("sqs batch processed", extra=extra)

    def _settle(self, messages: list[MessageTypeDef], visibility: int | None = None) -> None:
        """Delete the messages (visibility None), or make them visible again after `visibility` seconds."""
        for start in range(0, len(messages), SQS_RECEIVE_MAX):
            entries: list[Any] = []
            for i, m in enumerate(messages[start : start + SQS_RECEIVE_MAX]):
                entries.append({"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]})
                entries[-1] |= {} if visibility is None else {"VisibilityTimeout": visibility}
            if visibility is None:
                result: Any = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            else:
                result = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            for failure in result.get("Failed", []):
                logger.error("settling a message failed", extra={"event_source": self.name, **failure})
