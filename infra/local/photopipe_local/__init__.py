"""The local stack: the whole system on one machine, read from `template.yaml` (`photopipe local run`).

`LocalStack` starts moto on loopback, creates the template's resources there (`template`, `resources`), runs
the functions in this process (`runtime`) behind the local API Gateway (`gateway`) and points boto3 at moto
through `AWS_ENDPOINT_URL`, so handler code has no local-only branch.
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
