"""Enhancement end to end on the local stack, with a small exported model (the real GFPGAN architecture,
narrow channels, seeded random weights) so the local CPU worker starts: upload → ingest → enhance →
completed → download the result through its presigned link."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from aws_lambda_powertools.utilities import parameters
from PIL import Image

from photopipe import wiring
from photopipe_local import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import LiveStack, photo_jpeg
from tests.e2e.test_local_stack import upload, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from photopipe_export.arch import GfpganConfig
    from photopipe_export.export import export_gfpgan

    out = tmp_path_factory.mktemp("gfpgan-small")
    export_gfpgan(
        None, out, config=GfpganConfig(out_size=512, num_style_feat=64, num_mlp=2, narrow=0.0625), fp16=False
    )
    return out


@pytest.fixture(scope="module")
def live_with_model(model_dir: Path) -> Iterator[LiveStack]:
    wiring.reset()
    parameters.clear_caches()
    stack = LocalStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="photopipe-e2e-enhance",
        write_state=False,
        env_overrides={"PHOTOPIPE_MODEL_DIR": str(model_dir), "PHOTOPIPE_CLASSIFIER": "none"},
    )
    with stack:
        yield LiveStack(stack)
    wiring.reset()
    parameters.clear_caches()


def _until(check: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.25)


def test_upload_enhance_complete_download(live_with_model: LiveStack) -> None:
    live = live_with_model
    reg = live.post(
        "/api/v1/auth/register",
        json={"username": "enhancer", "email": "enhancer@example.com", "password": "an-e2e-password"},
    )
    assert reg.status_code == 201, reg.text
    token = reg.json()["token"]

    # the local CPU worker has loaded the model and joined the fleet
    _until(lambda: live.get("/api/v1/health").json()["fleet"]["healthy"] == 1)

    image_id = upload(live, token, "astronaut.jpg", photo_jpeg((384, 384)), "image/jpeg")["image_id"]
    assert wait_for_state(live, token, image_id)["state"] == "classification_skipped"

    resp = live.post("/api/v1/enhance", token=token, json={"image_id": image_id, "params": {"scale": 2}})
    assert resp.status_code == 202, resp.text
    job_id = resp.json()["job_id"]

    job = _until(
        lambda: (
            (j := live.get(f"/api/v1/enhance/{job_id}", token=token).json())["state"]
            in {"completed", "failed"}
            and j
        )
    )
    assert job["state"] == "completed", job
    assert job["faces"] >= 1
    assert (job["width"], job["height"]) == (768, 768)
    assert {"detect", "restore", "upscale", "encode"} <= set(job["timings"])

    download = live.get(f"/api/v1/enhance/{job_id}/download", token=token, allow_redirects=False)
    assert download.status_code == 302
    result = requests.get(download.headers["Location"], timeout=30)
    assert result.status_code == 200
    assert Image.open(io.BytesIO(result.content)).size == (768, 768)
