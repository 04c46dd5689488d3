"""The `photopipe` command run in-process, as a user runs it: argv in; exit code, stdout, stderr out.
Every test gets its own config and state directories and no server or token from the environment."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from photopipe_cli.main import main


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


Run = Callable[..., Result]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PHOTOPIPE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("PHOTOPIPE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("PHOTOPIPE_API_URL", raising=False)
    monkeypatch.delenv("PHOTOPIPE_TOKEN", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    return tmp_path


@pytest.fixture
def run(home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Run:
    def _run(*args: str, stdin: str = "") -> Result:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = main(list(args))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return _run
