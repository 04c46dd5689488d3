"""What `photopipe local` shows and does around a local stack: the lines `photopipe local run` prints, and
`photopipe local invoke`, which reads the state file a running stack writes and runs one function against it.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from photopipe_local.stack import LocalStack
    from photopipe_local.template import FunctionSpec

NOT_RUNNING_MESSAGE = "no local stack is running — start it with `make run`"


class StackNotRunningError(Exception):
    """No state file, or the stack it describes is gone."""


@dataclass(frozen=True)
class StackState:
    """What the state file says about a running stack (`LocalStack.state()` writes it)."""

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
    functions: dict[str, dict[str, Any]]
    wechat_sandbox: str | None = None  # the WeChat Pay sandbox's base URL (`photopipe pay simulate`)

    def function(self, logical_id: str) -> FunctionSpec:
        from photopipe_local.template import FunctionSpec

        if logical_id not in self.functions:
            known = ", ".join(sorted(self.functions)) or "none"
            raise KeyError(f"no function {logical_id!r} in the running stack (functions: {known})")
        fields = {
            k: v for k, v in self.functions[logical_id].items() if k not in ("sqs_events", "http_routes")
        }
        return FunctionSpec(logical_id=logical_id, **{**fields, "code_uri": Path(fields["code_uri"])})


def read_state(state_file: str | Path) -> StackState:
    """The running stack's state; StackNotRunningError if there is none or it is gone."""
    from photopipe_local.stack import STATE_VERSION, reachable

    path = Path(state_file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.pop("version", None) != STATE_VERSION:
            raise ValueError(f"its version is not {STATE_VERSION}")
        state = StackState(**data)
    except FileNotFoundError as e:
        raise StackNotRunningError(NOT_RUNNING_MESSAGE) from e
    except (OSError, ValueError, TypeError) as e:
        raise StackNotRunningError(f"{NOT_RUNNING_MESSAGE} (unreadable state file {path}: {e})") from e
    try:
        os.kill(state.pid, 0)  # is that process still there?
    except ProcessLookupError:
        raise StackNotRunningError(f"{NOT_RUNNING_MESSAGE} (stale state file {path})") from None
    except PermissionError:
        pass  # it is, under another user
    if not reachable(state.endpoint):
        raise StackNotRunningError(f"{NOT_RUNNING_MESSAGE} (stale state file {path})")
    return state


def running_state(template: str | Path, state_file: str | Path | None = None) -> StackState:
    """The running local stack's state, for a user command: a `CliError` (exit 1) when there is none."""
    from photopipe_cli.errors import CliError
    from photopipe_local.stack import default_state_file

    try:
        return read_state(state_file or default_state_file(template))
    except StackNotRunningError as e:
        raise CliError(str(e)) from None


def invoke_function(state: StackState, logical_id: str, event: Any) -> Any:
    """Run one function once on one event against the running stack, like `sam local invoke -e`. The
    environment is the stack's for the duration of the call; the handler's exception propagates."""
    from photopipe_local.runtime import LocalFunction, module_name_for, patched_environ

    spec = state.function(logical_id)
    module_name = f"{module_name_for(logical_id)}_invoke"  # not the stack's: it may run in this process
    with patched_environ(state.environment):
        try:
            return LocalFunction.load(spec, module_name).invoke(event)
        finally:
            sys.modules.pop(module_name, None)


def describe(stack: LocalStack) -> list[str]:
    """Human-readable lines: where everything is."""
    template, endpoint = stack.template, stack.endpoint
    lines = [f"photopipe local stack '{template.stack_name}' is up ({template.path}, {stack.region})"]
    if stack.gateway is not None and stack.http_api is not None:
        lines.append(f"  API           {stack.gateway.url}  ({len(stack.http_api.routes.routes)} routes)")
    if stack.gateway is not None and stack.http_api is not None:
        if (stack.template.root / "web" / "index.html").is_file():
            lines.append(f"  web UI        {stack.gateway.url}/  (open it in a browser)")
        ws = stack.gateway.url.replace("http://", "ws://", 1)
        lines += [f"  WebSocket     {ws}{api.path}?token=<JWT>  (live updates)" for api in stack.websockets]
    lines.append(f"  AWS endpoint  {endpoint}  (moto; AWS_ENDPOINT_URL={endpoint} for the aws CLI)")
    if stack.wechat is not None and stack.wechat.started:
        lines.append(
            f"  WeChat Pay    {stack.wechat.base_url}  (sandbox: `photopipe pay simulate ORDER_ID` pays an order)"
        )
    consumers = {
        s.queue_url: f"{s.function.spec.logical_id} (batch {s.event.batch_size})" for s in stack.event_sources
    }
    kinds = ("S3::Bucket", "DynamoDB::Table", "SQS::Queue", "SecretsManager::Secret", "SSM::Parameter")
    for kind, label in zip(kinds, ("bucket", "table", "queue", "secret", "parameter"), strict=True):
        for entry in (e for e in stack.physical.values() if e.type == f"AWS::{kind}"):
            shown = entry.ref if label in ("queue", "secret") else entry.name
            consumer = f"  -> {consumers[entry.ref]}" if entry.ref in consumers else ""
            lines.append(f"  {label:<13} {entry.logical_id} = {shown}{consumer}")
    lines += [f"  function      {spec.logical_id} = {spec.module_path}" for spec in stack.function_specs]
    return [*lines, f"  state file    {stack.state_file}"] if stack.write_state else lines


def try_it_command(stack: LocalStack) -> str | None:
    """One copy-pasteable command that exercises the API (a GET route without parameters, health first)."""
    routes = stack.http_api.routes.routes if stack.gateway and stack.http_api else []
    candidates = [
        r for r in routes if r.method in ("GET", "ANY") and r.path.startswith("/") and "{" not in r.path
    ]
    best = min(candidates, key=lambda r: ("health" not in r.path, len(r.path)), default=None)
    return None if best is None or stack.gateway is None else f"curl -s {stack.gateway.url}{best.path}"
