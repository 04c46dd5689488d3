"""Live updates on the local stack with a real WebSocket client: a user's connection hears about their own
photos, jobs and credits as they change (and another user's connection hears nothing); a bad, expired or
`alg: none` token is refused at the handshake; a connection whose `$disconnect` was lost is forgotten the
first time a post to it fails; closing a connection forgets it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.utilities import parameters
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from photopipe import wiring
from photopipe.auth.tokens import TokenService
from photopipe.models import User
from photopipe_local import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import LiveStack, photo_jpeg
from tests.e2e.test_local_stack import upload

pytestmark = pytest.mark.e2e

FINAL_IMAGE_STATES = {"classified", "classification_skipped", "classification_failed", "rejected", "failed"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    # Jobs are queued without a GPU worker (and none starts: no model), so their states are the API's own.
    no_model = tmp_path_factory.mktemp("no-model")
    overrides = {"ENHANCE_QUEUE_WHEN_NO_WORKERS": "true", "PHOTOPIPE_MODEL_DIR": str(no_model)}
    wiring.reset()
    parameters.clear_caches()
    stack = LocalStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="photopipe-e2e-ws",
        write_state=False,
        env_overrides=overrides,
    )
    with stack:
        yield LiveStack(stack)
    wiring.reset()
    parameters.clear_caches()


def _register(live: LiveStack, name: str) -> dict[str, Any]:
    body = {"username": name, "email": f"{name}@example.com", "password": "a-websocket-password"}
    resp = live.post("/api/v1/auth/register", json=body)
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _websocket_url(live: LiveStack) -> str:
    return str(live.get("/api/v1/info").json()["websocket_url"])


def _socket(live: LiveStack, token: str) -> ClientConnection:
    return connect(f"{_websocket_url(live)}?token={token}", open_timeout=10)


def _messages_until(client: ClientConnection, done: Any, timeout: float = 60) -> list[dict[str, Any]]:
    """Messages received until `done(messages)` holds (or the timeout passes)."""
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not done(messages) and (left := deadline - time.monotonic()) > 0:
        try:
            messages.append(json.loads(client.recv(timeout=left)))
        except TimeoutError:
            break
    return messages


def _nothing_before_my_own_message(client: ClientConnection) -> None:
    """A client's message is answered on its connection, in order: if that answer comes first, nothing else
    was sent to the connection before it."""
    client.send(json.dumps({"action": "hello"}))
    assert json.loads(client.recv(timeout=10))["message"] == "Forbidden"


def _connections(live: LiveStack) -> dict[str, str]:
    """connection id -> user id, as the connections table holds them."""
    assert live.stack.clients is not None
    items = live.stack.clients.dynamodb.scan(TableName=live.stack.name("ConnectionsTable"))["Items"]
    return {item["connection_id"]["S"]: item["user_id"]["S"] for item in items}


def test_info_reports_where_the_websocket_is(live: LiveStack) -> None:
    assert _websocket_url(live) == f"ws://127.0.0.1:{live.stack.port}/ws"


def test_a_connection_hears_of_its_users_photos_jobs_and_credits_only(live: LiveStack) -> None:
    alice, bob = _register(live, "alice-live"), _register(live, "bob-live")
    with _socket(live, alice["token"]) as mine, _socket(live, bob["token"]) as theirs:
        # WHEN Alice uploads a photo
        photo = upload(live, alice["token"], "portrait.jpg", photo_jpeg((1200, 900)), "image/jpeg")

        # THEN her connection follows it through the pipeline, state by state, without polling
        def photo_done(messages: list[dict[str, Any]]) -> bool:
            return any(m.get("state") in FINAL_IMAGE_STATES for m in messages)

        seen = _messages_until(mine, photo_done)
        assert [m["state"] for m in seen if m["type"] == "image.updated"] == [
            "pending_upload",
            "processing",
            "processed",
            "classification_skipped",  # no vision model configured locally
        ]
        assert all(m["image_id"] == photo["image_id"] and m["at"] for m in seen)

        # WHEN she asks for an enhancement, then cancels it
        job = live.post("/api/v1/enhance", token=alice["token"], json={"image_id": photo["image_id"]})
        assert job.status_code == 202, job.text
        job_id = job.json()["job_id"]

        def job_cancelled(messages: list[dict[str, Any]]) -> bool:
            return any(m.get("job_id") == job_id and m["state"] == "cancelled" for m in messages)

        queued = _messages_until(mine, lambda ms: any(m.get("job_id") == job_id for m in ms))
        assert live.delete(f"/api/v1/enhance/{job_id}", token=alice["token"]).status_code in (200, 204)
        later = queued + _messages_until(mine, job_cancelled)

        # THEN she sees the job queued then cancelled, and her balance go down by the credit and back
        jobs = [(m["state"], m["progress"]) for m in later if m["type"] == "job.updated"]
        assert jobs == [("queued", 0), ("cancelled", 0)]
        live.wait_idle()
        balances = [m["balance"] for m in later + _drain(mine) if m["type"] == "credits.updated"]
        assert balances[-2:] == [9, 10], balances

        # AND Bob's connection heard nothing of it
        _nothing_before_my_own_message(theirs)


def _drain(client: ClientConnection) -> list[dict[str, Any]]:
    """What is already waiting on the connection (its own answer marks the end)."""
    client.send(json.dumps({"action": "hello"}))
    messages = _messages_until(client, lambda ms: bool(ms) and ms[-1].get("message") == "Forbidden")
    return messages[:-1]


def _token(live: LiveStack, *, expired: bool = False, secret: str | None = None) -> str:
    assert live.stack.clients is not None
    real = live.stack.clients.secretsmanager.get_secret_value(SecretId=live.stack.ref("JwtSecret"))[
        "SecretString"
    ]
    service = TokenService(
        secret=secret or real, issuer="photopipe", audience="photopipe-api", ttl_seconds=3600
    )
    user = User(
        user_id="u-mallory", username="mallory", email="m@example.com", created_at="2026-01-01T00:00:00Z"
    )
    return service.issue(user, now=time.time() - 7200 if expired else None)


def _alg_none(live: LiveStack) -> str:
    _, payload, _ = _token(live).split(".")  # a real token's claims, with no signature needed
    return "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + payload + "."


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(lambda live: "", id="missing"),
        pytest.param(lambda live: "not-a-token", id="garbage"),
        pytest.param(lambda live: _token(live, secret="s" * 64), id="other-key"),
        pytest.param(lambda live: _token(live, expired=True), id="expired"),
        pytest.param(_alg_none, id="alg-none"),
    ],
)
def test_a_bad_token_is_refused_at_the_handshake(live: LiveStack, token: Any) -> None:
    before = _connections(live)

    with pytest.raises(InvalidStatus) as refused:
        _socket(live, token(live))

    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}") == {"message": "Unauthorized"}
    # no connection was recorded (one an earlier test closed may still be on its way out meanwhile)
    assert set(_connections(live)) - set(before) == set()


def test_the_same_token_signed_properly_is_accepted(live: LiveStack) -> None:
    # (so the refusals above are about the tokens, not the socket)
    with _socket(live, _token(live)) as client:
        _nothing_before_my_own_message(client)


def test_a_dead_connection_is_forgotten_when_posting_to_it_fails(live: LiveStack) -> None:
    carol = _register(live, "carol-live")
    user_id = carol["user"]["user_id"]
    with _socket(live, carol["token"]) as client:
        (alive,) = [c for c, u in _connections(live).items() if u == user_id]
        # GIVEN a connection API Gateway has closed but whose $disconnect never arrived
        assert live.stack.clients is not None
        stale = {"connection_id": {"S": "StaleStale12345="}, "user_id": {"S": user_id}}
        stale |= {
            "connected_at": {"S": "2026-11-23T02:29:50.000000Z"},
            "expires_at": {"N": str(int(time.time()) + 3600)},
        }
        live.stack.clients.dynamodb.put_item(TableName=live.stack.name("ConnectionsTable"), Item=stale)

        # WHEN something of Carol's changes (a new upload)
        resp = live.post(
            "/api/v1/uploads",
            token=carol["token"],
            json={"filename": "later.jpg", "content_type": "image/jpeg", "size": 1000},
        )
        assert resp.status_code == 201
        message = json.loads(client.recv(timeout=30))
        live.wait_idle()

        # THEN the open connection got the message and the dead one is gone from the table
        assert (message["type"], message["state"]) == ("image.updated", "pending_upload")
        assert {c for c, u in _connections(live).items() if u == user_id} == {alive}


def test_closing_a_connection_forgets_it(live: LiveStack) -> None:
    dave = _register(live, "dave-live")
    with _socket(live, dave["token"]) as client:
        (connection_id,) = [c for c, u in _connections(live).items() if u == dave["user"]["user_id"]]
        client.close()

    deadline = time.monotonic() + 10  # $disconnect runs once the close handshake is over
    while connection_id in _connections(live) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert connection_id not in _connections(live)
