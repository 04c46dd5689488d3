"""Classification on the local stack with a fake DashScope on loopback (the real SDK talks to it):
upload → processed → classified, and the same photo again costs no second model call."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
import requests
from aws_lambda_powertools.utilities import parameters
from PIL import Image

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


def coffee_jpeg(size: tuple[int, int]) -> bytes:
    """A picture the module's other tests never send (so the caches have not seen it)."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.coffee()).resize(size).save(buf, "JPEG", quality=88)
    return buf.getvalue()


def classify_now(live: LiveStack, token: str | None, data: bytes) -> requests.Response:
    headers = {"content-type": "image/jpeg"} | ({"authorization": f"Bearer {token}"} if token else {})
    return requests.post(f"{live.api_url}/api/v1/classify", data=data, headers=headers, timeout=60)


def test_classify_test_route_answers_through_the_same_caches_and_counts(
    live_llm: LiveStack, fake: FakeDashScope
) -> None:
    live = live_llm
    reg = live.post(
        "/api/v1/auth/register",
        json={"username": "classify-now", "email": "now@example.com", "password": "pw-12345678"},
    )
    token = reg.json()["token"]
    wiring.set_admin("classify-now", env=live.stack.environment)  # global statistics are for admins
    before = live.get("/api/v1/stats/today", token=token).json()
    calls = len(fake.requests)
    photo = coffee_jpeg((1200, 800))

    # a photo never seen: one model call, answered at once
    first = classify_now(live, token, photo)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["category"], body["label_zh"], body["source"]) == ("single_person", "单人照片", "llm")
    assert (body["width"], body["height"], body["format"]) == (1200, 800, "jpeg")
    assert len(fake.requests) == calls + 1

    # the same bytes as the old service's form field: the exact cache, no model call
    again = requests.post(
        f"{live.api_url}/api/v1/classify",
        headers={"authorization": f"Bearer {token}"},
        files={"file": ("same.jpg", photo, "image/jpeg")},
        timeout=30,
    )
    assert again.status_code == 200, again.text
    assert again.json()["source"] == "exact_cache"
    # the same picture resized: the near-duplicate cache, no model call
    near = classify_now(live, token, coffee_jpeg((600, 400)))
    assert near.json()["source"] in {"near_duplicate", "exact_cache"}
    assert len(fake.requests) == calls + 1

    # the same counters as uploaded photos
    after = live.get("/api/v1/stats/today", token=token).json()
    assert after["requests"] == before["requests"] + 3
    assert after["misses"] == before["misses"] + 1
    assert after["exact_hits"] + after["near_hits"] == before["exact_hits"] + before["near_hits"] + 2

    # a photo the cache now knows: /classify/check-cache says so before anything is sent
    check = live.post("/api/v1/classify/check-cache", token=token, json={"sha256": body["sha256"]}).json()
    assert check["hit"] is True


def test_classify_test_route_refuses_clearly(live_llm: LiveStack) -> None:
    live = live_llm
    token = live.post(
        "/api/v1/auth/register",
        json={"username": "classify-bad", "email": "bad@example.com", "password": "pw-12345678"},
    ).json()["token"]
    text = classify_now(live, token, b"plain text, not a photo\n" * 10)
    assert text.status_code == 422
    assert text.json()["error"]["code"] == "unsupported_format"
    empty = classify_now(live, token, b"")
    assert empty.status_code == 400
    assert empty.json()["error"]["code"] == "no_photo"
    big = classify_now(live, token, b"\xff" * 4_500_000)
    assert big.status_code == 413
    assert "POST /api/v1/uploads" in big.json()["error"]["message"]
    anonymous = classify_now(live, None, photo_jpeg((64, 64)))
    assert anonymous.status_code == 401
