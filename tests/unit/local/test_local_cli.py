"""The `photopipe` command's parser and its answers when no stack is running."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from photopipe_cli.main import main, parse


def test_local_group_has_run_and_invoke() -> None:
    run = parse(["local", "run", "--port", "3001", "--template", "t.yaml", "--parameter", "Stage=prod"])
    assert (run.port, run.template, run.parameter) == (3001, "t.yaml", [("Stage", "prod")])
    invoke = parse(["local", "invoke", "IngestFunction", "-e", "-"])
    assert (invoke.function, invoke.event) == ("IngestFunction", "-")


def test_local_run_runs_moto_in_a_child_process_unless_told_otherwise() -> None:
    default = parse(["local", "run"])
    assert (default.moto_process, default.concurrency) == (True, None)
    threaded = parse(["local", "run", "--no-moto-process", "--concurrency", "2"])
    assert (threaded.moto_process, threaded.concurrency) == (False, 2)


def test_local_run_refuses_a_concurrency_below_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "run", "--concurrency", "0"]) == 2
    assert "--concurrency" in capsys.readouterr().err


def test_invoke_without_a_running_stack_says_how_to_start_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"Records": []}))
    code = main(["local", "invoke", "Fn", "-e", str(event), "--template", str(tmp_path / "template.yaml")])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert "no local stack is running — start it with `make run`" in captured.err


def test_invoke_with_a_stale_state_file_says_the_same(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / ".photopipe" / "local-stack.json"
    state.parent.mkdir()
    state.write_text(
        json.dumps(
            {
                "version": 1,
                "pid": 2**22 + 12345,  # above Linux's pid_max default: no such process
                "started_at": "",
                "template": "",
                "stack_name": "s",
                "region": "us-east-1",
                "account_id": "123456789012",
                "endpoint": "http://127.0.0.1:9",
                "api_url": None,
                "environment": {},
                "resources": {},
                "functions": {},
            }
        )
    )
    code = main(["local", "invoke", "Fn", "-e", "event.json", "--state-file", str(state)])
    assert code == 1
    assert "no local stack is running — start it with `make run` (stale state file" in capsys.readouterr().err
