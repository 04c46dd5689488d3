"""Shared test helpers: the `events/` files, handler loading, and a clean AWS-less environment."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from aws_lambda_powertools.utilities.typing import LambdaContext

# Powertools reads these when `photopipe.observability` is first imported (at collection): set them first,
# as Lambda does before it imports a handler.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "photopipe")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "photopipe")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach AWS: fake credentials, a fixed region, Powertools quiet and offline."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "photopipe")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "photopipe")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")


def load_event(name: str) -> dict[str, Any]:
    """One of the sample events in `events/` (the same files `sam local invoke -e` takes)."""
    return copy.deepcopy(json.loads((EVENTS / name).read_text()))


def load_handler(function_dir: str) -> ModuleType:
    """Import `functions/<dir>/app.py` under a unique module name (every function has an `app.py`)."""
    name = f"photopipe_test_fn_{function_dir}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "functions" / function_dir / "app.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class FakeContext(LambdaContext):
    """A Lambda context for direct handler calls (Powertools' own type, filled in)."""

    def __init__(self, name: str = "photopipe-test", timeout_ms: int = 30_000) -> None:
        self._function_name = name
        self._function_version = "$LATEST"
        self._memory_limit_in_mb = 512
        self._invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
        self._aws_request_id = "00000000-0000-0000-0000-000000000000"
        self._log_group_name = f"/aws/lambda/{name}"
        self._log_stream_name = "test"
        self._timeout_ms = timeout_ms

    def get_remaining_time_in_millis(self) -> int:  # type: ignore[override]
        return self._timeout_ms


@pytest.fixture
def lambda_context() -> FakeContext:
    return FakeContext()
