"""The local stack: the whole system on one machine, read from `template.yaml`.

`LocalStack` starts moto on loopback, creates the template's resources there, runs the functions in this
process (SQS event sources and the gateway included) and points boto3 at moto through `AWS_ENDPOINT_URL`, so
handler code has no local-only branch. `photopipe local run` and `photopipe local invoke` are its CLI.
Modules: `template` (samtranslator's translation, read), `resources` (created in moto with boto3), `runtime`
(handlers run as Lambda would, SQS event sources), `gateway` (the local API Gateway: Starlette on uvicorn),
`stack` (moto in a thread or a child process, the state file, `photopipe local invoke`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["LocalStack"]

if TYPE_CHECKING:
    from photopipe_local.stack import LocalStack


def __getattr__(name: str) -> Any:
    """`LocalStack` is imported on first use: `import photopipe_local.runtime` need not load samtranslator,
    Starlette and moto."""
    if name == "LocalStack":
        from photopipe_local.stack import LocalStack

        return LocalStack
    raise AttributeError(f"module 'photopipe_local' has no attribute {name!r}")
