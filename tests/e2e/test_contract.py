"""The API answers exactly what its OpenAPI document says, under schemathesis (every check, as `--checks all` would run them: server
errors, undeclared statuses, responses that break their schema, valid requests refused, invalid ones
accepted, auth that is ignored, ...), against the local stack this test starts on free ports.

The run is bounded (`MAX_TIME_S`) and single-threaded: schemathesis' generator compiles code, and two
worker threads doing that at once trip a CPython 3.11 bug (`SystemError: AST constructor recursion depth
mismatch`). Its settings are in `schemathesis.toml` next to this file, each with its reason. A failure
prints schemathesis' report, with the seed and a `curl` line to reproduce each finding."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from photopipe import wiring
from photopipe_local import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import LiveStack, photo_jpeg
from tests.e2e.test_local_stack import upload, wait_for_state

pytestmark = pytest.mark.e2e

MAX_TIME_S = 60
CONFIG = Path(__file__).with_name("schemathesis.toml")
SCHEMATHESIS = Path(sys.executable).with_name("st")


@pytest.fixture(scope="module")
def contract_stack() -> Iterator[LiveStack]:
    wiring.reset()
    parameters.clear_caches()
    stack = LocalStack(ROOT / "template.yaml", port=0, stack_name="photopipe-contract", write_state=False)
    with stack:
        yield LiveStack(stack)
    wiring.reset()
    parameters.clear_caches()


def _fleet_secret(live: LiveStack) -> str:
    client = boto3.session.Session().client(
        "secretsmanager", endpoint_url=live.endpoint_url, region_name=live.stack.region
    )
    return str(client.get_secret_value(SecretId=live.stack.ref("FleetSecret"))["SecretString"])


def test_schemathesis_finds_no_server_error_and_no_undeclared_status(
    contract_stack: LiveStack, tmp_path: Path
) -> None:
    live = contract_stack
    # GIVEN a real registered user, made admin (so the statistics are tested past 403), who owns one
    # processed photo (so the routes that take an image id reach their logic), and the fleet's secret
    reg = live.post(
        "/api/v1/auth/register",
        json={"username": "contract", "email": "contract@example.com", "password": "a-contract-password"},
    )
    assert reg.status_code == 201, reg.text
    token = reg.json()["token"]
    wiring.set_admin("contract", env=live.stack.environment)
    photo = upload(live, token, "seed.jpg", photo_jpeg((640, 480)), "image/jpeg")
    assert wait_for_state(live, token, photo["image_id"])["state"] != "pending_upload"

    # WHEN schemathesis runs every check against the stack for a bounded time
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{live.api_url}/api/v1/openapi.json",
            "--url",
            live.api_url,
            "-H",
            f"Authorization: Bearer {token}",
            "-H",
            f"X-Fleet-Secret: {_fleet_secret(live)}",
            # every check (schemathesis 4 runs them all unless told otherwise; `--checks all` on the command
            # line would also override the one per-path exception in schemathesis.toml)
            "--max-time",
            str(MAX_TIME_S),
            "--workers",
            "1",
            "--generation-database",
            "none",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=MAX_TIME_S + 240,
        check=False,
    )
    report = result.stdout + result.stderr

    # THEN it generated cases for every operation and none failed a check (no 5xx, no undeclared status)
    cases = re.search(r"(\d+) generated", report)
    print(f"schemathesis: {cases.group(0) if cases else 'no summary'}")  # shown with -rA, and in -s runs
    assert result.returncode == 0, report[-20_000:]
    assert cases is not None, report[-5_000:]
    assert int(cases.group(1)) > 100, report[-5_000:]
    selected, tested = re.search(r"Selected: (\d+)/(\d+)", report), re.search(r"Tested: (\d+)", report)
    assert selected is not None, report[-5_000:]
    assert tested is not None, report[-5_000:]
    assert int(tested.group(1)) == int(selected.group(2)), "every operation was tested"
