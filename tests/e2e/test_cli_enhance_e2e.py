"""`photopipe enhance` and `photopipe download --what enhanced` on the local stack with a small exported
model (the real GFPGAN architecture, narrow, seeded random weights) and the stack's CPU worker.

Without live updates there is no `--wait` here: the job is submitted by the command, the test waits for
it over HTTP, and the command downloads the result by the photo's id (the journal remembers the job)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from PIL import Image

from photopipe import wiring
from photopipe_local import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import LiveStack, photo_jpeg

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def live_with_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    from photopipe_export.arch import GfpganConfig
    from photopipe_export.export import export_gfpgan

    model = tmp_path_factory.mktemp("gfpgan-small")
    export_gfpgan(
        None,
        model,
        config=GfpganConfig(out_size=512, num_style_feat=64, num_mlp=2, narrow=0.0625),
        fp16=False,
    )
    wiring.reset()
    parameters.clear_caches()
    stack = LocalStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="photopipe-e2e-cli-enhance",
        write_state=False,
        env_overrides={"PHOTOPIPE_MODEL_DIR": str(model), "PHOTOPIPE_CLASSIFIER": "none"},
    )
    with stack:
        yield LiveStack(stack)
    wiring.reset()
    parameters.clear_caches()


def until(check: Any, timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)
    return value


def test_enhance_then_download_the_result(live_with_model: LiveStack, tmp_path: Path) -> None:
    live = live_with_model
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOPIPE_")}
    env |= {
        "PHOTOPIPE_CONFIG_DIR": str(tmp_path / "config"),
        "PHOTOPIPE_STATE_DIR": str(tmp_path / "state"),
        "PHOTOPIPE_API_URL": live.api_url,
    }

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "photopipe_cli.main", *args],
            input=stdin, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False,
        )  # fmt: skip
        assert "Traceback" not in done.stderr, done.stderr
        return done

    assert (
        cli(
            "register",
            "--username",
            "eve",
            "--email",
            "eve@example.com",
            "--password-stdin",
            stdin="a-long-password",
        ).returncode
        == 0
    )
    (tmp_path / "portrait.jpg").write_bytes(photo_jpeg((384, 384)))
    uploaded = json.loads(cli("upload", "portrait.jpg", "--json").stdout)
    image_id = uploaded["files"][0]["image_id"]
    until(lambda: live.get("/api/v1/health").json()["fleet"]["healthy"] == 1)
    live.wait_idle(120)

    submitted = cli("enhance", image_id, "--scale", "2", "--quality-level", "fast", "--json")
    assert submitted.returncode == 0, submitted.stderr
    (job,) = json.loads(submitted.stdout)["jobs"]
    assert (job["image_id"], job["state"], job["params"]["scale"]) == (image_id, "queued", 2)

    early = cli("download", image_id, "--what", "enhanced")
    assert early.returncode in (0, 1)  # the CPU worker may already be done; if not, the command says so
    if early.returncode == 1:
        assert "there is no result to download yet" in early.stderr
        token = json.loads((tmp_path / "config" / "credentials.json").read_text())["servers"][live.api_url][
            "token"
        ]
        until(
            lambda: live.get(f"/api/v1/enhance/{job['job_id']}", token=token).json()["state"] == "completed"
        )
        done = cli("download", image_id, "--what", "enhanced", "--json")
    else:
        (tmp_path / "portrait.enhanced.jpg").unlink()
        done = cli("download", image_id, "--what", "enhanced", "--json")
    assert done.returncode == 0, done.stderr
    saved = json.loads(done.stdout)
    assert saved["path"] == "portrait.enhanced.jpg"
    assert Image.open(io.BytesIO((tmp_path / "portrait.enhanced.jpg").read_bytes())).size == (768, 768)

    by_job = cli("download", job["job_id"], "--what", "enhanced", "-o", "by-job.jpg")
    assert by_job.returncode == 0, by_job.stderr
    assert (tmp_path / "by-job.jpg").read_bytes() == (tmp_path / "portrait.enhanced.jpg").read_bytes()
