"""`infra/check_layer.py`, run by `make build`, on built layouts made here (sam build needs no test)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from tests.conftest import ROOT


def _checker() -> Any:
    spec = importlib.util.spec_from_file_location("check_layer", ROOT / "infra" / "check_layer.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _build(tmp_path: Path, *extra: str) -> Path:
    site = tmp_path / "SharedLayer" / "python"
    for rel in ("photopipe/__init__.py", "photopipe/models/__init__.py", "boto3/__init__.py", *extra):
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_bytes(b"x" * 1000)
    (tmp_path / "ApiFunction").mkdir()
    (tmp_path / "ApiFunction" / "app.py").write_bytes(b"x" * 500)
    return tmp_path


def test_a_layer_with_only_the_runtime_package_passes(tmp_path: Path) -> None:
    report = _checker().check(_build(tmp_path))
    assert report["ok"] is True
    assert report["tool_modules_in_layer"] == []
    assert report["layer_unzipped_mb"] == round(3000 / 2**20, 1)


def test_tool_modules_in_the_layer_are_named(tmp_path: Path) -> None:
    build = _build(tmp_path, "photopipe_local/stack.py", "photopipe/cli.py", "photopipe_cli/main.py")
    report = _checker().check(build)
    assert report["ok"] is False
    assert set(report["tool_modules_in_layer"]) == {"photopipe_local", "photopipe_cli", "photopipe/cli.py"}
