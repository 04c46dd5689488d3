"""Classification on the local stack with a fake DashScope on loopback (the real SDK talks to it):
upload → processed → classified, and the same photo again costs no second model call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aws_lambda_powertools.utilities import parameters

from photopipe import wiring
from photopipe_local import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import LiveStack, photo_jpeg
from tests.e2e.test_local_stack import upload, wait_for_state
from tests.fakes.dashscope_server import FakeDashScope

pytestmark = pytest.mark.e2e

KEY = "sk-e2e-0123456789"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeDashScope]:
    with FakeDashScope(api_key=KEY) as server:
        server.responder = lambda _image: (
            '{"category": "single_person", "confidence": 0.9, "reason": "one person"}'
        )
        yield server


@pytest.fixture(scope="module")
def live_llm(fake: FakeDashScope) -> Iterator[LiveStack]:
    wiring.reset()
    parameters.clear_caches()
    env = {"DASHSCOPE_API_KEY": KEY, "DASHSCOPE_HTTP_BASE_URL": fake.base_url}
    stack = LocalStack(
        ROOT / "template.yaml", port=0, stack_name="photopipe-e2e-llm", write_state=False, env_overrides=env
    )
    with stack:
        yield LiveStack(stack)
    wiring.reset()
    parameters.clear_caches()


def test_upload_processed_classified_and_a_copy_served_from_cache(
    live_llm: LiveStack, fake: FakeDashScope
) -> None:
    live = live_llm
    reg = live.post(
        "/api/v1/auth/register",
        json={"username": "llm-user", "email": "llm@example.com", "password": "pw-12345678"},
    )
    token = reg.json()["token"]

    first = upload(live, token, "me.jpg", photo_jpeg((1800, 1200)), "image/jpeg")
    image = wait_for_state(live, token, first["image_id"])
    assert image["state"] == "classified", image
    assert image["classification"]["category"] == "single_person"
    assert image["classification"]["source"] == "llm"
    assert len(fake.requests) == 1

    # the same picture, smaller and recompressed (as a chat app forwards it)
    second = upload(live, token, "me-forwarded.jpg", photo_jpeg((900, 600)), "image/jpeg")
    copy = wait_for_state(live, token, second["image_id"])
    assert copy["state"] == "classified"
    assert copy["classification"]["source"] in {"near_duplicate", "exact_cache"}
    assert len(fake.requests) == 1, "the copy cost no model call"

    wiring.set_admin("llm-user", env=live.stack.environment)  # global statistics are for admins
    today = live.get("/api/v1/stats/today", token=token).json()
    assert today["misses"] == 1
    assert today["exact_hits"] + today["near_hits"] == 1
