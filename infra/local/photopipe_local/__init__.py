"""The local stack: the whole system on one machine, read from `template.yaml`.

`LocalStack` starts moto on loopback, creates the template's resources there, runs the functions in this
process (SQS event sources and the HTTP API included) and points boto3 at moto through `AWS_ENDPOINT_URL`,
so handler code has no local-only branch. `photopipe local run` and `photopipe local invoke` are its CLI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Exports are imported on first use, so `import photopipe_local.template` (or the CLI's other groups) does not
# pay for moto and boto3.
_EXPORTS = {
    "HttpApiApp": "http_adapter",
    "HttpApiServer": "http_adapter",
    "Route": "http_adapter",
    "RouteTable": "http_adapter",
    "build_event": "http_adapter",
    "AwsClients": "resources",
    "ResourceCreationError": "resources",
    "create_resources": "resources",
    "EnvironmentConflictError": "runtime",
    "FunctionLoadError": "runtime",
    "LambdaContext": "runtime",
    "LocalFunction": "runtime",
    "SqsEventSource": "runtime",
    "local_environment": "runtime",
    "LocalStack": "stack",
    "MotoServer": "stack",
    "StackNotRunningError": "stack",
    "StackState": "stack",
    "default_state_file": "stack",
    "invoke_function": "stack",
    "read_state": "stack",
    "FunctionSpec": "template",
    "PhysicalRegistry": "template",
    "PhysicalResource": "template",
    "StackPlan": "template",
    "Template": "template",
    "TemplateError": "template",
    "UnresolvedReferenceError": "template",
}

__all__ = [
    "AwsClients",
    "EnvironmentConflictError",
    "FunctionLoadError",
    "FunctionSpec",
    "HttpApiApp",
    "HttpApiServer",
    "LambdaContext",
    "LocalFunction",
    "LocalStack",
    "MotoServer",
    "PhysicalRegistry",
    "PhysicalResource",
    "ResourceCreationError",
    "Route",
    "RouteTable",
    "SqsEventSource",
    "StackNotRunningError",
    "StackPlan",
    "StackState",
    "Template",
    "TemplateError",
    "UnresolvedReferenceError",
    "build_event",
    "create_resources",
    "default_state_file",
    "invoke_function",
    "local_environment",
    "read_state",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'photopipe_local' has no attribute {name!r}")
    return getattr(importlib.import_module(f"photopipe_local.{_EXPORTS[name]}"), name)


if TYPE_CHECKING:
    from photopipe_local.http_adapter import HttpApiApp, HttpApiServer, Route, RouteTable, build_event
    from photopipe_local.resources import AwsClients, ResourceCreationError, create_resources
    from photopipe_local.runtime import (
        EnvironmentConflictError,
        FunctionLoadError,
        LambdaContext,
        LocalFunction,
        SqsEventSource,
        local_environment,
    )
    from photopipe_local.stack import (
        LocalStack,
        MotoServer,
        StackNotRunningError,
        StackState,
        default_state_file,
        invoke_function,
        read_state,
    )
    from photopipe_local.template import (
        FunctionSpec,
        PhysicalRegistry,
        PhysicalResource,
        StackPlan,
        Template,
        TemplateError,
        UnresolvedReferenceError,
    )
