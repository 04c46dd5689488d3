"""The whole system on one machine: moto on loopback, the template's resources, the functions in-process,
their SQS event sources and the HTTP API.

    with LocalStack("template.yaml", port=0) as stack:
        requests.get(f"{stack.api_url}/api/v1/health")
        stack.wait_idle()

While it runs, a state file (`<template dir>/.photopipe/local-stack.json`) says where everything is, so
`photopipe local invoke` (another process) can run one function against the same resources.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from photopipe_local.http_adapter import HttpApiApp, HttpApiServer, RouteTable
from photopipe_local.resources import AwsClients, create_resources
from photopipe_local.runtime import (
    EnvironmentPatch,
    LocalFunction,
    SqsEventSource,
    local_environment,
    module_name_for,
    patched_environ,
    queue_backlog,
    retry_delay_from_environment,
)
from photopipe_local.template import (
    DEFAULT_STACK_NAME,
    FunctionSpec,
    HttpApiSpec,
    PhysicalRegistry,
    PhysicalResource,
    StackPlan,
    Template,
)

logger = logging.getLogger("photopipe_local.stack")

STATE_DIR = ".photopipe"
STATE_FILE = "local-stack.json"
STATE_VERSION = 1
PORT_ENV = "PHOTOPIPE_PORT"
MOTO_PORT_ENV = "PHOTOPIPE_MOTO_PORT"
DEFAULT_PORT = 3000
NOT_RUNNING_MESSAGE = "no local stack is running — start it with `make run`"


class StackNotRunningError(Exception):
    """No state file, or the stack it describes is gone."""


def default_state_file(template: str | Path) -> Path:
    return Path(template).resolve().parent / STATE_DIR / STATE_FILE


def _port_from_env(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        port = int(raw)
    except ValueError as e:
        raise ValueError(f"{name} must be a port number, got {raw!r}") from e
    if not 0 <= port <= 65535:
        raise ValueError(f"{name} must be a port number, got {raw!r}")
    return port


def _check_port_free(host: str, port: int, what: str, env: str) -> None:
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as e:
            raise OSError(
                e.errno, f"cannot listen on {host}:{port} for {what}: {e.strerror} (set {env})"
            ) from e


class MotoServer:
    """moto in server mode on loopback, in this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requested_port = port
        self._server: Any = None  # moto.server.ThreadedMotoServer
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        # ThreadedMotoServer waits forever if its thread cannot bind: check first.
        _check_port_free(self.host, self.requested_port, "the AWS emulator (moto)", MOTO_PORT_ENV)
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address=self.host, port=self.requested_port, verbose=False)
        server.start()
        self._server = server
        self.port = server.get_host_and_port()[1]
        logger.info("moto server listening", extra={"endpoint": self.endpoint})

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@dataclass(frozen=True)
class StackState:
    """What the state file says about a running stack."""

    pid: int
    started_at: str
    template: str
    stack_name: str
    region: str
    account_id: str
    endpoint: str
    api_url: str | None
    environment: dict[str, str]
    resources: dict[str, Any]
    functions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, **self.__dict__}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StackState:
        if data.get("version") != STATE_VERSION:
            raise StackNotRunningError(f"state file version {data.get('version')!r} is not {STATE_VERSION}")
        fields = {k: v for k, v in data.items() if k != "version"}
        return cls(**fields)

    def function(self, logical_id: str) -> FunctionSpec:
        if logical_id not in self.functions:
            known = ", ".join(sorted(self.functions)) or "none"
            raise KeyError(f"no function {logical_id!r} in the running stack (functions: {known})")
        f = self.functions[logical_id]
        return FunctionSpec(
            logical_id=logical_id,
            name=f["name"],
            arn=f["arn"],
            code_uri=Path(f["code_uri"]),
            handler=f["handler"],
            runtime=f["runtime"],
            timeout=int(f["timeout"]),
            memory_size=int(f["memory_size"]),
            environment=f["environment"],
            log_group=f["log_group"],
        )


def _function_json(spec: FunctionSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "arn": spec.arn,
        "code_uri": str(spec.code_uri),
        "handler": spec.handler,
        "runtime": spec.runtime,
        "timeout": spec.timeout,
        "memory_size": spec.memory_size,
        "environment": dict(spec.environment),
        "log_group": spec.log_group,
        "sqs_events": [e.name for e in spec.sqs_events],
        "http_routes": [e.route_key for e in spec.http_events],
    }


class LocalStack:
    """Start and stop the local stack for one template. Usable as a context manager."""

    def __init__(
        self,
        template: str | Path = "template.yaml",
        *,
        port: int | None = None,
        moto_port: int | None = None,
        moto_endpoint: str | None = None,
        parameters: Mapping[str, str] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str | None = None,
        env_overrides: Mapping[str, str] | None = None,
        retry_delay_seconds: int | None = None,
        serve_http: bool = True,
        write_state: bool = True,
        state_file: str | Path | None = None,
        host: str = "127.0.0.1",
        serialize_invocations: bool = False,
    ) -> None:
        """
        port: HTTP API port (None: $PHOTOPIPE_PORT or 3000; 0: any free port).
        moto_port: moto's port (None: $PHOTOPIPE_MOTO_PORT or any free port).
        moto_endpoint: use an already running moto server instead of starting one.
        env_overrides: variables set after the template's (e.g. PHOTOPIPE_CLASSIFIER=none in tests).
        retry_delay_seconds: how soon a failed SQS message is retried (None:
            $PHOTOPIPE_LOCAL_RETRY_DELAY_SECONDS or 1; Lambda would wait for the visibility timeout).
        serialize_invocations: run one invocation at a time across all functions. By default each
            function runs one invocation at a time (one warm execution environment) while different
            functions run concurrently, sharing this process's module state (e.g. Powertools' logger and
            metrics singletons, lru_cache'd clients in the layer).
        """
        self.template = Template(template, parameters=parameters, stack_name=stack_name, region=region)
        self.host = host
        env_port = _port_from_env(PORT_ENV)
        self.requested_port = port if port is not None else env_port if env_port is not None else DEFAULT_PORT
        env_moto_port = _port_from_env(MOTO_PORT_ENV)
        self.requested_moto_port = moto_port if moto_port is not None else env_moto_port or 0
        self.external_endpoint = moto_endpoint
        self.env_overrides = dict(env_overrides or {})
        self.retry_delay_seconds = (
            retry_delay_seconds if retry_delay_seconds is not None else retry_delay_from_environment()
        )
        self.serve_http = serve_http
        self.serialize_invocations = serialize_invocations
        self.write_state = write_state
        self.state_file = Path(state_file) if state_file else default_state_file(self.template.path)

        self.moto: MotoServer | None = None
        self.endpoint = ""
        self.clients: AwsClients | None = None
        self.plan: StackPlan | None = None
        self.physical = PhysicalRegistry()
        self.function_specs: tuple[FunctionSpec, ...] = ()
        self.http_apis: tuple[HttpApiSpec, ...] = ()
        self.functions: dict[str, LocalFunction] = {}
        self.event_sources: list[SqsEventSource] = []
        self.http: HttpApiServer | None = None
        self.environment: dict[str, str] = {}
        self._env_patch: EnvironmentPatch | None = None
        self._started = False
        self.enhance_worker: LocalEnhanceWorker | None = None

    # ------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def region(self) -> str:
        return self.template.region

    @property
    def account_id(self) -> str:
        return self.template.account_id

    @property
    def api_url(self) -> str:
        if self.http is None:
            raise RuntimeError("the HTTP API is not running (serve_http=False or not started)")
        return self.http.url

    @property
    def port(self) -> int:
        if self.http is None:
            raise RuntimeError("the HTTP API is not running (serve_http=False or not started)")
        return self.http.port

    def start(self) -> LocalStack:
        if self._started:
            raise RuntimeError("the local stack is already started")
        self._started = True
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        logger.info(
            "local stack started",
            extra={
                "endpoint": self.endpoint,
                "api": self.http.url if self.http else None,
                "functions": sorted(self.functions),
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )
        return self

    def _start(self) -> None:
        if self.serve_http and self.requested_port:
            _check_port_free(self.host, self.requested_port, "the HTTP API", PORT_ENV)
        if self.external_endpoint:
            self.endpoint = self.external_endpoint.rstrip("/")
        else:
            self.moto = MotoServer(self.host, self.requested_moto_port)
            self.moto.start()
            self.endpoint = self.moto.endpoint
        self.clients = AwsClients.for_endpoint(self.endpoint, self.region)
        self.plan = self.template.plan(self.endpoint)
        self.physical = create_resources(self.plan, self.clients, self.region)
        self.function_specs = self.template.functions(self.physical)
        self.http_apis = self.template.http_apis(self.physical)

        self.environment = local_environment(
            endpoint=self.endpoint,
            region=self.region,
            functions=self.function_specs,
            overrides=self.env_overrides,
        )
        self._env_patch = EnvironmentPatch(self.environment)
        self._env_patch.apply()  # before importing: handlers may read settings at import time

        shared_lock = threading.Lock() if self.serialize_invocations else None
        for spec in self.function_specs:
            self.functions[spec.logical_id] = LocalFunction.load(spec, lock=shared_lock)

        for spec in self.function_specs:
            for event in spec.sqs_events:
                if not event.enabled:
                    continue
                queue = self.physical.by_arn(event.queue_arn)
                # Template.functions() checked that the queue is one of the template's.
                assert queue is not None
                assert queue.ref is not None
                source = SqsEventSource(
                    self.functions[spec.logical_id],
                    event,
                    queue_url=queue.ref,
                    sqs=self.clients.sqs,
                    region=self.region,
                    retry_delay_seconds=self.retry_delay_seconds,
                )
                self.event_sources.append(source)
                source.start()

        self.enhance_worker = LocalEnhanceWorker.if_model_present(self.environment, self.template.path.parent)
        if self.enhance_worker is not None:
            self.enhance_worker.start()

        routes = RouteTable.from_functions(self.function_specs)
        if self.serve_http and routes.routes:
            app = HttpApiApp(routes, self.functions, self.http_apis, account_id=self.account_id)
            self.http = HttpApiServer(app, host=self.host, port=self.requested_port)
            self.http.start()

        if self.write_state:
            self._write_state()

    def stop(self) -> None:
        """Stop everything this stack started (HTTP server, pollers, moto) and restore the environment."""
        if not self._started:
            return
        if self.http is not None:
            self.http.stop()
            self.http = None
        for source in self.event_sources:
            source.stop()
        for source in self.event_sources:
            source.join(timeout=30)
        self.event_sources = []
        if self.enhance_worker is not None:
            self.enhance_worker.stop()
            self.enhance_worker = None
        if self.moto is not None:
            self.moto.stop()
            self.moto = None
        if self._env_patch is not None:
            self._env_patch.restore()
            self._env_patch = None
        for logical_id in self.functions:
            sys.modules.pop(module_name_for(logical_id), None)
        self.functions = {}
        if self.write_state:
            self._remove_state()
        self._started = False
        logger.info("local stack stopped")

    # ---------------------------------------------------------------------------------- waiting

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until every queue with an event source is empty (nothing visible, in flight or delayed)
        and no batch is being processed. Failed messages count until they are retried to success or moved
        to their DLQ. Raises TimeoutError naming what is still pending."""
        assert self.clients is not None, "start the stack first"
        deadline = time.monotonic() + timeout
        quiet_checks = 0
        while True:
            pending = {
                source.name: queue_backlog(self.clients.sqs, source.queue_url) + (1 if source.busy else 0)
                for source in self.event_sources
            }
            quiet_checks = quiet_checks + 1 if not any(pending.values()) else 0
            if quiet_checks >= 2:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"queues still busy after {timeout} s: {pending}")
            time.sleep(0.1)

    # ----------------------------------------------------------------------------------- lookups

    def resource(self, logical_id: str) -> PhysicalResource:
        return self.physical[logical_id]

    def name(self, logical_id: str) -> str:
        """The physical name of a resource (bucket, table, queue, secret, function)."""
        return self.physical[logical_id].name

    def ref(self, logical_id: str) -> str:
        """What `!Ref` gives: a bucket's or table's name, a queue's URL, a secret's ARN."""
        ref = self.physical[logical_id].ref
        if ref is None:
            raise KeyError(f"{logical_id} has no known Ref value")
        return ref

    # ------------------------------------------------------------------------------------- state

    def state(self) -> StackState:
        return StackState(
            pid=os.getpid(),
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
            template=str(self.template.path),
            stack_name=self.template.stack_name,
            region=self.region,
            account_id=self.account_id,
            endpoint=self.endpoint,
            api_url=self.http.url if self.http else None,
            environment=dict(self.environment),
            resources=self.physical.to_json(),
            functions={spec.logical_id: _function_json(spec) for spec in self.function_specs},
        )

    def _write_state(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.state().to_json(), indent=2) + "\n", encoding="utf-8")
        temporary.replace(self.state_file)

    def _remove_state(self) -> None:
        try:
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if data.get("pid") == os.getpid() and data.get("endpoint") == self.endpoint:
            self.state_file.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------- invoke


class LocalEnhanceWorker:
    """The GPU worker, on whatever ONNX Runtime provider this machine has (CPU here), in a thread: started
    only when an exported face model is present (`PHOTOPIPE_MODEL_DIR`, else `models/gfpgan` next to the
    template). Without one no worker registers, so `POST /api/v1/enhance` answers 503
    `enhancement_unavailable` with the export command in its message."""

    def __init__(self, environment: Mapping[str, str], model_dir: Path) -> None:
        self.environment = {
            **environment,
            "PHOTOPIPE_MODEL_DIR": str(model_dir),
            "PHOTOPIPE_WORKER_ID": environment.get("PHOTOPIPE_WORKER_ID", f"local-{socket.gethostname()}"),
            "PHOTOPIPE_POLL_WAIT_S": environment.get("PHOTOPIPE_POLL_WAIT_S", "1"),  # stops within 1 s
        }
        self.model_dir = model_dir
        self._worker: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def if_model_present(cls, environment: Mapping[str, str], root: Path) -> LocalEnhanceWorker | None:
        configured = environment.get("PHOTOPIPE_MODEL_DIR") or os.environ.get("PHOTOPIPE_MODEL_DIR")
        model_dir = Path(configured) if configured else root / "models" / "gfpgan"
        if not (model_dir / "manifest.json").is_file():
            logger.info(
                "no exported face model: enhancement is unavailable until one is exported with "
                "`photopipe models export --weights GFPGANv1.4.pth --out models/gfpgan`",
                extra={"model_dir": str(model_dir)},
            )
            return None
        return cls(environment, model_dir)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="local-enhance-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        # Imported here: numpy/ONNX Runtime load only when a model is present.
        from photopipe.settings import WorkerSettings
        from photopipe.wiring import gpu_worker

        try:
            worker = gpu_worker(WorkerSettings.from_env(self.environment))  # loads and warms up the model
        except Exception:
            logger.exception(
                "the local enhancement worker could not start", extra={"model_dir": str(self.model_dir)}
            )
            return
        self._worker = worker
        if self._stop.is_set():
            return
        logger.info("local enhancement worker started", extra={"model_dir": str(self.model_dir)})
        worker.run()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.stop()
        if self._thread is not None:
            self._thread.join(timeout=timeout)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reachable(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    if parts.hostname is None or parts.port is None:
        return False
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=1):
            return True
    except OSError:
        return False


def read_state(state_file: str | Path) -> StackState:
    """The running stack's state; StackNotRunningError if there is none or it is gone."""
    path = Path(state_file)
    try:
        state = StackState.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError as e:
        raise StackNotRunningError(NOT_RUNNING_MESSAGE) from e
    except (OSError, ValueError, TypeError) as e:
        raise StackNotRunningError(f"{NOT_RUNNING_MESSAGE} (unreadable state file {path}: {e})") from e
    if not _pid_alive(state.pid) or not _reachable(state.endpoint):
        raise StackNotRunningError(f"{NOT_RUNNING_MESSAGE} (stale state file {path})")
    return state


def invoke_function(state: StackState, logical_id: str, event: Any) -> Any:
    """Run one function once on one event against the running stack, like `sam local invoke -e`.
    The environment is the stack's for the duration of the call; the handler's exception propagates."""
    spec = state.function(logical_id)
    # Not the stack's own module name: the stack may be running in this very process (tests).
    module_name = f"{module_name_for(logical_id)}_invoke"
    with patched_environ(state.environment):
        function = LocalFunction.load(spec, module_name)
        try:
            return function.invoke(event)
        finally:
            sys.modules.pop(module_name, None)


def describe(stack: LocalStack) -> list[str]:
    """Human-readable lines: where everything is."""
    lines = [
        f"photopipe local stack '{stack.template.stack_name}' is up ({stack.template.path}, {stack.region})"
    ]
    if stack.http is not None:
        routes = stack.http.app.routes.routes
        lines.append(f"  API           {stack.http.url}  ({len(routes)} routes)")
    lines.append(
        f"  AWS endpoint  {stack.endpoint}  (moto; AWS_ENDPOINT_URL={stack.endpoint} for the aws CLI)"
    )
    by_type: dict[str, list[PhysicalResource]] = {}
    for entry in stack.physical.values():
        by_type.setdefault(entry.type, []).append(entry)
    labels = {
        "AWS::S3::Bucket": "bucket",
        "AWS::DynamoDB::Table": "table",
        "AWS::Serverless::SimpleTable": "table",
        "AWS::SQS::Queue": "queue",
        "AWS::SecretsManager::Secret": "secret",
        "AWS::SSM::Parameter": "parameter",
    }
    consumers = {
        source.queue_url: f"-> {source.function.spec.logical_id} (batch {source.event.batch_size})"
        for source in stack.event_sources
    }
    for resource_type, label in labels.items():
        for entry in by_type.get(resource_type, []):
            shown = (
                entry.ref
                if resource_type in ("AWS::SQS::Queue", "AWS::SecretsManager::Secret")
                else entry.name
            )
            suffix = f"  {consumers[entry.ref]}" if entry.ref in consumers else ""
            lines.append(f"  {label:<13} {entry.logical_id} = {shown}{suffix}")
    for spec in stack.function_specs:
        lines.append(f"  function      {spec.logical_id} = {spec.module_path}")
    if stack.write_state:
        lines.append(f"  state file    {stack.state_file}")
    return lines


def try_it_command(stack: LocalStack) -> str | None:
    """One copy-pasteable command that exercises the API (a GET route without parameters, health first)."""
    if stack.http is None:
        return None
    candidates = [
        r
        for r in stack.http.app.routes.routes
        if r.method in ("GET", "ANY") and "{" not in r.path and r.path != "$default"
    ]
    if not candidates:
        return None
    best = min(candidates, key=lambda r: ("health" not in r.path, len(r.path)))
    return f"curl -s {stack.http.url}{best.path}"
