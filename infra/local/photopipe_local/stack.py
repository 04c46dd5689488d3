"""The whole system on one machine: moto on loopback, the template's resources, the functions in-process,
their SQS and table-stream event sources and the gateway (HTTP and WebSocket APIs).

    with LocalStack("template.yaml", port=0) as stack:
        requests.get(f"{stack.api_url}/api/v1/health")
        stack.wait_idle()

While it runs, a state file (`<template dir>/.photopipe/local-stack.json`) says where everything is, so
`photopipe local invoke` (another process) can run one function against the same resources.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from photopipe_local.gateway import GatewayServer, HttpApi, RouteTable, gateway_app
from photopipe_local.resources import AwsClients, create_resources
from photopipe_local.runtime import (
    LocalFunction,
    SqsEventSource,
    concurrency_from_environment,
    local_environment,
    patched_environ,
)
from photopipe_local.streams import StreamEventSource, stream_events
from photopipe_local.template import (
    DEFAULT_STACK_NAME,
    FunctionSpec,
    PhysicalRegistry,
    PhysicalResource,
    Template,
)
from photopipe_local.web import WebUi
from photopipe_local.websocket import WebSocketGateway, point_at_gateway, websocket_apis, websocket_gateways
from photopipe_local.wechat_sandbox import SandboxError, WechatPaySandbox

logger = logging.getLogger("photopipe_local.stack")

STATE_VERSION = 1
PORT_ENV, MOTO_PORT_ENV, DEFAULT_PORT = "PHOTOPIPE_PORT", "PHOTOPIPE_MOTO_PORT", 3000


def default_state_file(template: str | Path) -> Path:
    return Path(template).resolve().parent / ".photopipe" / "local-stack.json"


def _port_from_env(name: str) -> int | None:
    if (raw := os.environ.get(name) or None) is not None and (not raw.isdigit() or int(raw) > 65535):
        raise ValueError(f"{name} must be a port number, got {raw!r}")
    return None if raw is None else int(raw)


def reachable(endpoint: str) -> bool:
    parts = urlsplit(endpoint)
    with contextlib.suppress(OSError), socket.create_connection((parts.hostname or "", parts.port or 0), 1):
        return True
    return False


class MotoServer:
    """moto in server mode on loopback: a thread of this process (`ThreadedMotoServer`), or with
    `process=True` a `moto_server` child process, out of the handlers' GIL. Clients reach it over HTTP.
    Either way with `photopipe_local.moto_server`'s fixes to its SQS (same answers, in time linear in the
    backlog)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, process: bool = False) -> None:
        self.host, self.requested_port, self.process, self.port = host, port, process, 0
        self._server: Any = None  # moto.server.ThreadedMotoServer
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The child process's id (None when moto runs in this process or is stopped)."""
        return self._child.pid if self._child is not None else None

    def start(self, timeout: float = 30.0) -> None:
        with socket.socket() as probe:  # a free port (ThreadedMotoServer would wait forever on a busy one)
            try:
                probe.bind((self.host, self.requested_port))
            except OSError as e:
                message = f"cannot listen on {self.host}:{self.requested_port} for moto: {e.strerror}"
                raise OSError(e.errno, f"{message} (set {MOTO_PORT_ENV})") from e
            self.port = probe.getsockname()[1]
        if not self.process:
            from moto.server import ThreadedMotoServer

            from photopipe_local.moto_server import apply_fixes

            apply_fixes()
            self._server = ThreadedMotoServer(ip_address=self.host, port=self.port, verbose=False)
            self._server.start()
        else:  # its output (werkzeug logs each request) is dropped; `moto_server -p PORT` shows a failure
            command = [
                sys.executable,
                "-m",
                "photopipe_local.moto_server",
                "-H",
                self.host,
                "-p",
                str(self.port),
            ]
            quiet = subprocess.DEVNULL
            self._child = subprocess.Popen(command, stdout=quiet, stderr=quiet)  # noqa: S603 - our own argv
            deadline = time.monotonic() + timeout
            while not reachable(self.endpoint):
                if self._child.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"moto_server did not start on {self.endpoint}")
                time.sleep(0.05)
        logger.info("moto server listening", extra={"endpoint": self.endpoint, "child_process": self.process})

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._child is not None:  # nothing to flush: moto keeps everything in memory
            self._child.kill()
            self._child.wait()
        self._server = self._child = None


def _function_json(spec: FunctionSpec) -> dict[str, Any]:
    described = asdict(spec) | {"code_uri": str(spec.code_uri), "environment": dict(spec.environment)}
    described["sqs_events"] = [event.name for event in spec.sqs_events]
    described["http_routes"] = [route.route_key for route in spec.http_events]
    return {key: value for key, value in described.items() if key not in ("logical_id", "http_events")}


class LocalStack:
    """Start and stop the local stack for one template. Usable as a context manager.

    port: gateway port (None: $PHOTOPIPE_PORT or 3000; 0: any free port). moto_port: moto's port (None:
    $PHOTOPIPE_MOTO_PORT or any free one). moto_endpoint: an already running moto to use instead.
    moto_process: run moto as a `moto_server` child process, not a thread of this one. env_overrides:
    variables set after the template's (e.g. PHOTOPIPE_CLASSIFIER=none in tests). retry_delay_seconds: how
    soon a failed SQS message is retried (None: $PHOTOPIPE_LOCAL_RETRY_DELAY_SECONDS or 1; Lambda would wait
    for the visibility timeout). wechat_sandbox: stand a sandbox in for WeChat Pay on loopback (the API's
    payment settings and the `WechatPaySecret` point at it; `POST /sandbox/wechatpay/orders/{id}/pay` on the
    gateway pays an order through it). concurrency: batches in flight per SQS event source mapping, at most
    (None: $PHOTOPIPE_LOCAL_CONCURRENCY or 1; a mapping's ScalingConfig.MaximumConcurrency lowers it), each
    in an execution environment of its own. An environment runs one invocation at a time; a function has as
    many as its busiest mapping needs (HTTP requests share them; a function with no SQS mapping has one),
    made on first need. All run in this process, sharing its module state (Powertools, cached clients), each
    with its own copy of the handler module.
    """

    def __init__(
        self,
        template: str | Path = "template.yaml",
        *,
        port: int | None = None,
        moto_port: int | None = None,
        moto_endpoint: str | None = None,
        moto_process: bool = False,
        parameters: Mapping[str, str] | None = None,
        stack_name: str = DEFAULT_STACK_NAME,
        region: str | None = None,
        env_overrides: Mapping[str, str] | None = None,
        retry_delay_seconds: int | None = None,
        concurrency: int | None = None,
        serve_http: bool = True,
        write_state: bool = True,
        state_file: str | Path | None = None,
        host: str = "127.0.0.1",
        wechat_sandbox: bool = True,
    ) -> None:
        self.template = Template(template, parameters=parameters, stack_name=stack_name, region=region)
        self.region, self.account_id = self.template.region, self.template.account_id
        self.port_setting = port if port is not None else _port_from_env(PORT_ENV)
        moto_port = moto_port if moto_port is not None else _port_from_env(MOTO_PORT_ENV)
        self.moto = MotoServer(host, moto_port or 0, process=moto_process)
        self.external_endpoint, self.host, self.env_overrides = moto_endpoint, host, dict(env_overrides or {})
        self.retry_delay_seconds, self.concurrency = retry_delay_seconds, concurrency
        self.serve_http, self.write_state = serve_http, write_state
        self.state_file = Path(state_file) if state_file else default_state_file(self.template.path)
        self.endpoint, self.environment, self.physical = "", dict[str, str](), PhysicalRegistry()
        self.clients: AwsClients | None = None
        self.function_specs: tuple[FunctionSpec, ...] = ()
        self.functions: dict[str, LocalFunction] = {}
        self.event_sources: list[SqsEventSource] = []
        self.stream_sources: list[StreamEventSource] = []
        self.websockets: list[WebSocketGateway] = []
        self.http_api: HttpApi | None = None
        self.gateway: GatewayServer | None = None
        self.wechat: WechatPaySandbox | None = WechatPaySandbox(host=host) if wechat_sandbox else None
        self._running: contextlib.ExitStack | None = None  # what stop() undoes, last started first

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def api_url(self) -> str:
        if self.gateway is None:
            raise RuntimeError("the gateway is not running (serve_http=False, no routes, or not started)")
        return self.gateway.url

    @property
    def port(self) -> int:
        return int(urlsplit(self.api_url).port or 0)

    def start(self) -> LocalStack:
        if self._running is not None:
            raise RuntimeError("the local stack is already started")
        started, self._running = time.monotonic(), contextlib.ExitStack()
        try:
            self._start(self._running)
        except BaseException:
            self.stop()
            raise
        duration_ms = round((time.monotonic() - started) * 1000)
        extra: dict[str, Any] = {"endpoint": self.endpoint, "api": self.gateway and self.gateway.url}
        extra |= {"functions": sorted(self.functions), "duration_ms": duration_ms}
        logger.info("local stack started", extra=extra)
        return self

    def _start(self, running: contextlib.ExitStack) -> None:
        if self.serve_http:  # take the port first: a busy one fails before the slow parts
            port = DEFAULT_PORT if self.port_setting is None else self.port_setting
            self.gateway = GatewayServer(host=self.host, port=port, port_env=PORT_ENV)
            running.callback(self.gateway.stop)
            self.gateway.bind()
        if not (endpoint := (self.external_endpoint or "").rstrip("/")):
            running.callback(self.moto.stop)
            self.moto.start()
            endpoint = self.moto.endpoint
        self.endpoint, clients = endpoint, AwsClients.for_endpoint(endpoint, self.region)
        self.physical, self.clients = create_resources(self.template, clients), clients
        if self.gateway is not None:  # `${Api.ApiEndpoint}` of a WebSocket API: this gateway
            point_at_gateway(self.template, self.physical, self.gateway.url)
        self.function_specs = specs = self.template.functions(self.physical)
        overrides = self._start_wechat_sandbox(running, clients) | self.env_overrides
        self.environment = local_environment(endpoint, self.region, specs, overrides)
        running.enter_context(patched_environ(self.environment))  # before importing: settings may be read
        running.callback(self._unload_functions)
        most = self.concurrency if self.concurrency is not None else concurrency_from_environment()
        batches = {
            e: min(most, e.maximum_concurrency or most) for f in specs for e in f.sqs_events if e.enabled
        }
        for spec in specs:  # one by one: what loaded before a failure is unloaded by stop()
            environments = max((batches.get(e, 1) for e in spec.sqs_events), default=1)
            self.functions[spec.logical_id] = LocalFunction.load(spec, concurrency=environments)

        running.callback(self._stop_event_sources)
        for spec, event in ((f, e) for f in specs for e in f.sqs_events if e.enabled):
            queue = self.physical.by_arn(event.queue_arn)  # the template's: Template.functions() checked
            if queue is not None and queue.ref is not None:
                function, delay = self.functions[spec.logical_id], self.retry_delay_seconds
                source = SqsEventSource(
                    function,
                    event,
                    queue.ref,
                    clients.sqs,
                    retry_delay_seconds=delay,
                    concurrency=batches[event],
                )
                self.event_sources.append(source)
                source.start()
        streams, delay = StreamEventSource.client(endpoint, self.region), self.retry_delay_seconds
        for stream_event in (e for e in stream_events(self.template, self.physical) if e.enabled):
            function, sqs = self.functions[stream_event.function], clients.sqs
            stream = StreamEventSource(function, stream_event, streams, sqs, retry_delay_seconds=delay)
            self.stream_sources.append(stream)
            stream.start()
        if worker := LocalEnhanceWorker.if_model_present(self.environment, self.template.root):
            running.callback(worker.stop)
            worker.start()

        self.websockets = websocket_gateways(
            websocket_apis(self.template, self.physical),
            self.functions,
            account_id=self.account_id,
            region=self.region,
        )
        routes = RouteTable.from_functions(self.function_specs)
        cors = self.template.http_apis(self.physical)
        self.http_api = HttpApi(routes, self.functions, cors, account_id=self.account_id)
        if self.gateway is not None and (gateway_routes := self._gateway_routes()):
            self.gateway.start(gateway_app(gateway_routes))
            running.callback(self.gateway.stop)  # again, to stop it first (stopping twice is harmless)
        elif self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.write_state:
            self._write_state()
            running.callback(self._remove_state)

    def _start_wechat_sandbox(self, running: contextlib.ExitStack, clients: AwsClients) -> dict[str, str]:
        """Start the WeChat Pay sandbox and give the API its keys (new ones each start: the secret is
        overwritten). Returns the settings that point the functions at it."""
        if self.wechat is None or "WechatPaySecret" not in self.physical:
            return {}
        running.callback(self.wechat.stop)
        self.wechat.start()
        secret = self.ref("WechatPaySecret")
        clients.secretsmanager.put_secret_value(
            SecretId=secret, SecretString=self.wechat.keys.secret_document()
        )
        logger.info("wechat pay sandbox listening", extra={"url": self.wechat.base_url})
        return self.wechat.environment(self.gateway.url if self.gateway else None)

    async def _sandbox_pay(self, request: Request) -> JSONResponse:
        """Pay an order through the sandbox (the web UI's sandbox button; `photopipe pay simulate`)."""
        assert self.wechat is not None
        order_id = request.path_params["order_id"]
        try:
            delivery = await asyncio.to_thread(self.wechat.simulate_payment, order_id)
        except KeyError:
            return JSONResponse({"error": {"code": "no_such_order", "message": f"no order {order_id}"}}, 404)
        except SandboxError as e:
            return JSONResponse({"error": {"code": e.code.lower(), "message": e.message}}, e.status)
        return JSONResponse(
            {"order_id": order_id, "notify_status": delivery.status, "paid": delivery.accepted}
        )

    def _gateway_routes(self) -> list[BaseRoute]:
        """What the gateway serves, in order (the first full match wins): each WebSocket API (`/{stage}` and
        its `@connections` management API), the sandbox's pay route, the HTTP API; the web UI joins as a
        `Mount("/", StaticFiles(directory=web))` after the HTTP API."""
        assert self.http_api is not None
        routes: list[BaseRoute] = [self.http_api] if self.http_api.routes.routes else []
        if routes and self.wechat is not None and "WechatPaySecret" in self.physical:
            pay = Route("/sandbox/wechatpay/orders/{order_id}/pay", self._sandbox_pay, methods=["POST"])
            routes.insert(0, pay)
        if routes and (web := WebUi.beside(self.template.root, moto_endpoint=self.endpoint)) is not None:
            sandbox = self.wechat is not None and "WechatPaySecret" in self.physical
            routes.append(Route("/config.json", web.config_route(wechat_sandbox=sandbox), methods=["GET"]))
            routes.append(web.mount())
        return [route for api in self.websockets for route in api.routes()] + routes

    def _unload_functions(self) -> None:
        """The execution environments end with the stack, and so do the collaborators their handlers built
        once per process (clients bound to this stack's moto, its secrets cached by Powertools): a later stack
        in this process builds its own."""
        from aws_lambda_powertools.utilities import parameters

        from photopipe import wiring

        for function in self.functions.values():
            function.unload()
        wiring.reset()
        parameters.clear_caches()

    def _stop_event_sources(self) -> None:
        sources: list[SqsEventSource | StreamEventSource] = [*self.event_sources, *self.stream_sources]
        for source in sources:
            source.stop()
        for source in sources:
            source.join(30)
        self.event_sources, self.stream_sources = [], []

    def stop(self) -> None:
        """Stop everything this stack started (gateway, pollers, worker, moto) and restore the environment."""
        if self._running is not None:
            self._running.close()
            self._running, self.gateway, self.functions = None, None, {}
            logger.info("local stack stopped")

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Block until every queue with an event source is empty (nothing visible, in flight or delayed), no
        batch is being processed and every table stream with an event source is read to its end. Failed
        messages count until they are retried to success or moved to their DLQ. Raises TimeoutError naming
        what is still pending."""
        assert self.clients is not None, "start the stack first"
        deadline, quiet_checks = time.monotonic() + timeout, 0
        while True:
            pending = {source.name: source.backlog() + source.busy.is_set() for source in self.event_sources}
            pending |= {source.name: source.backlog() for source in self.stream_sources}
            if (quiet_checks := 0 if any(pending.values()) else quiet_checks + 1) >= 2:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"queues still busy after {timeout} s: {pending}")
            time.sleep(0.1)

    def resource(self, logical_id: str) -> PhysicalResource:
        return self.physical[logical_id]

    def name(self, logical_id: str) -> str:
        """The physical name of a resource (bucket, table, queue, secret, function)."""
        return self.physical[logical_id].name

    def ref(self, logical_id: str) -> str:
        """What `!Ref` gives: a bucket's or table's name, a queue's URL, a secret's ARN."""
        if (ref := self.physical[logical_id].ref) is None:
            raise KeyError(f"{logical_id} has no known Ref value")
        return ref

    def state(self) -> dict[str, Any]:
        """What the state file says (`photopipe local invoke` reads it: photopipe_cli.local_stack)."""
        return {
            "version": STATE_VERSION,
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "template": str(self.template.path),
            "stack_name": self.template.stack_name,
            "region": self.region,
            "account_id": self.account_id,
            "endpoint": self.endpoint,
            "api_url": self.gateway.url if self.gateway else None,
            "environment": dict(self.environment),
            "resources": self.physical.to_json(),
            "functions": {spec.logical_id: _function_json(spec) for spec in self.function_specs},
            "wechat_sandbox": self.wechat.base_url if self.wechat and self.wechat.started else None,
        }

    def _write_state(self) -> None:
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.state(), indent=2) + "\n")
        temporary.replace(self.state_file)

    def _remove_state(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # gone or unreadable: nothing of ours to remove
            data = json.loads(self.state_file.read_text(encoding="utf-8"))
            if data.get("pid") == os.getpid() and data.get("endpoint") == self.endpoint:
                self.state_file.unlink(missing_ok=True)


class LocalEnhanceWorker(threading.Thread):
    """The GPU worker, on whatever ONNX Runtime provider this machine has (CPU here), in a thread: started
    only when an exported face model is present (`PHOTOPIPE_MODEL_DIR`, else `models/gfpgan` next to the
    template). Without one no worker registers, so `POST /api/v1/enhance` answers 503
    `enhancement_unavailable` with the export command in its message."""

    def __init__(self, environment: Mapping[str, str], model_dir: Path) -> None:
        super().__init__(name="local-enhance-worker", daemon=True)
        defaults = {"PHOTOPIPE_WORKER_ID": f"local-{socket.gethostname()}", "PHOTOPIPE_POLL_WAIT_S": "1"}
        self.environment = defaults | dict(environment) | {"PHOTOPIPE_MODEL_DIR": str(model_dir)}
        self.model_dir, self.worker, self._stopping = model_dir, cast(Any, None), threading.Event()

    @classmethod
    def if_model_present(cls, environment: Mapping[str, str], root: Path) -> LocalEnhanceWorker | None:
        configured = environment.get("PHOTOPIPE_MODEL_DIR") or os.environ.get("PHOTOPIPE_MODEL_DIR")
        model_dir = Path(configured) if configured else root / "models" / "gfpgan"
        if (model_dir / "manifest.json").is_file():
            return cls(environment, model_dir)
        export = "`photopipe models export --weights GFPGANv1.4.pth --out models/gfpgan`"
        logger.info(f"no face model: enhancement needs {export}", extra={"model_dir": str(model_dir)})
        return None

    def run(self) -> None:
        from photopipe.settings import WorkerSettings  # here: numpy and ONNX Runtime load only with a model
        from photopipe.wiring import gpu_worker

        extra = {"model_dir": str(self.model_dir)}
        try:
            self.worker = gpu_worker(WorkerSettings.from_env(self.environment))  # loads, warms up the model
        except Exception:
            # A thread's last resort (else only sys.excepthook sees it): the stack keeps serving, enhancement
            # answering 503 as without a model, and the traceback is logged.
            logger.exception("the local enhancement worker could not start", extra=extra)
            return
        if not self._stopping.is_set():
            logger.info("local enhancement worker started", extra=extra)
            self.worker.run()

    def stop(self, timeout: float = 60.0) -> None:
        self._stopping.set()
        if self.worker is not None:
            self.worker.stop()
        self.join(timeout)
