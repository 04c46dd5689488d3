"""Live updates against moto: the WebSocket authorizer with the API's own secret, `$connect`/`$disconnect`
writing the connections table, and the notify function with the stream events from `events/`, posting
through its boto3 `apigatewaymanagementapi` client to a `@connections` API on loopback (the local stack's:
moto's answers 200 for any id and delivers nothing) to real WebSocket clients."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from photopipe import wiring
from photopipe.errors import ConfigurationError
from photopipe_local.gateway import GatewayServer, gateway_app
from photopipe_local.websocket import WebSocketApiSpec, WebSocketGateway
from tests.conftest import FakeContext, load_event, load_handler
from tests.integration.conftest import ApiClient, Stack

OWNER = "0f8c1b3e2a4d4c5f9e6a7b8c9d0e1f2a"  # the user in the events/notify-*.json and ws-*.json files


@dataclass
class Sockets:
    """A `@connections` API on loopback and the WebSocket clients connected to it."""

    api: WebSocketGateway
    url: str
    clients: contextlib.ExitStack

    def open(self) -> tuple[str, ClientConnection]:
        """A new connection: its id (as API Gateway would name it) and its client end."""
        before = set(self.api.connections)
        client = self.clients.enter_context(connect(self.url, open_timeout=10))
        (connection_id,) = set(self.api.connections) - before
        return connection_id, client


@pytest.fixture
def sockets(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sockets]:
    # A WebSocket API with no routes of its own: every handshake is accepted (the authorizer and the
    # connections function are tested on their own below).
    api = WebSocketGateway(
        WebSocketApiSpec("Live", "live", "ws", {}), {}, account_id="123456789012", region="us-east-1"
    )
    server = GatewayServer(port=0)
    server.start(gateway_app(api.routes()))
    url = "ws" + server.url.removeprefix("http") + "/ws"
    monkeypatch.setenv("WEBSOCKET_URL", url)  # what the template resolves it to in the local stack
    wiring.reset()
    with contextlib.ExitStack() as clients:
        yield Sockets(api, url, clients)
    server.stop()


def _connection(stack: Stack, connection_id: str, user_id: str, *, expires_in: int = 3600) -> None:
    table = stack.dynamodb.Table(stack.env["CONNECTIONS_TABLE"])
    item = {"connection_id": connection_id, "user_id": user_id, "connected_at": "2026-11-23T02:29:50.000000Z"}
    table.put_item(Item=item | {"expires_at": int(time.time()) + expires_in})


def _connection_ids(stack: Stack) -> set[str]:
    items = stack.dynamodb.Table(stack.env["CONNECTIONS_TABLE"]).scan()["Items"]
    return {str(item["connection_id"]) for item in items}


def _next_message(client: ClientConnection) -> dict[str, Any]:
    return json.loads(client.recv(timeout=10))


def _nothing_before_my_own_message(client: ClientConnection) -> None:
    """A message from the client is answered on the same connection, in order: if the answer is the first
    thing it receives, nothing was sent to it before."""
    client.send(json.dumps({"action": "hello"}))
    assert _next_message(client)["message"] == "Forbidden"


# ------------------------------------------------------------------ notify


def test_a_change_reaches_every_open_connection_of_its_owner_and_gone_ones_are_forgotten(
    stack: Stack, sockets: Sockets
) -> None:
    # GIVEN the owner has two open connections, one whose $disconnect never arrived, and one expired record;
    # another user has an open connection too
    (first, first_client), (second, second_client) = sockets.open(), sockets.open()
    other, other_client = sockets.open()
    for connection_id in (first, second, "GoneGoneGone123="):
        _connection(stack, connection_id, OWNER)
    expired, expired_client = sockets.open()
    _connection(stack, expired, OWNER, expires_in=-60)  # API Gateway closed it; TTL has not deleted it yet
    _connection(stack, other, "someone-else")

    # WHEN the notify function gets the stream record of the owner's photo turning `processed`
    response = load_handler("notify").handler(
        load_event("notify-image-processed.json"), FakeContext("notify")
    )

    # THEN both open connections get the message, the gone one is deleted, and nobody else hears of it
    assert response == {"batchItemFailures": []}
    expected = {
        "type": "image.updated",
        "image_id": "5a1e0d3c2b4f4e6a8c9d7e5f3a1b2c4d",
        "state": "processed",
        "at": "2026-11-23T02:30:00.480000Z",
    }
    assert _next_message(first_client) == expected
    assert _next_message(second_client) == expected
    assert _connection_ids(stack) == {first, second, other, expired}
    _nothing_before_my_own_message(other_client)
    _nothing_before_my_own_message(expired_client)


def test_a_batch_sends_only_what_changed_and_a_bad_record_fails_alone(stack: Stack, sockets: Sockets) -> None:
    # GIVEN the owner is connected, and a batch whose third record is not a stream record Lambda would send
    connection_id, client = sockets.open()
    _connection(stack, connection_id, OWNER)
    event = load_event("notify-stream-batch.json")
    event["Records"][2]["eventName"] = "TRUNCATE"

    response = load_handler("notify").handler(event, FakeContext("notify"))

    # THEN that record alone is reported (by its sequence number), and the client hears of the others'
    # visible changes only: progress 70 and the rejection, not the lease renewal or the new etag
    assert response == {"batchItemFailures": [{"itemIdentifier": "1100000000017454423014"}]}
    progress, rejected = _next_message(client), _next_message(client)
    assert (progress["type"], progress["state"], progress["progress"]) == ("job.updated", "running", 70)
    assert (rejected["type"], rejected["state"], rejected["reason"]) == (
        "image.updated",
        "rejected",
        "unsupported_format",
    )
    _nothing_before_my_own_message(client)


def test_an_owner_with_no_connection_is_no_failure(stack: Stack, sockets: Sockets) -> None:
    response = load_handler("notify").handler(
        load_event("notify-image-processed.json"), FakeContext("notify")
    )

    assert response == {"batchItemFailures": []}
    assert _connection_ids(stack) == set()


# ------------------------------------------------------------------ $connect, $disconnect


def test_connect_records_the_connection_under_its_user_and_disconnect_forgets_it(stack: Stack) -> None:
    handler = load_handler("ws_connections").handler

    assert handler(load_event("ws-connect.json"), FakeContext("ws-connections")) == {"statusCode": 200}

    item = stack.dynamodb.Table(stack.env["CONNECTIONS_TABLE"]).get_item(
        Key={"connection_id": "L0SM9cOFvHcCIhw="}
    )
    assert item["Item"]["user_id"] == OWNER
    assert item["Item"]["username"] == "alice"
    # API Gateway closes a connection after 2 hours: the record expires then (TTL, epoch seconds)
    assert int(item["Item"]["expires_at"]) == 1795314590 + 7200
    assert handler(load_event("ws-disconnect.json"), FakeContext("ws-connections")) == {"statusCode": 200}
    assert _connection_ids(stack) == set()


def test_connect_without_the_authorizer_is_refused(stack: Stack) -> None:
    event = load_event("ws-connect.json")
    del event["requestContext"]["authorizer"]

    with pytest.raises(ConfigurationError, match="authorizer"):
        load_handler("ws_connections").handler(event, FakeContext("ws-connections"))
    assert _connection_ids(stack) == set()


# ------------------------------------------------------------------ the authorizer


def test_the_authorizer_accepts_the_apis_tokens_and_nothing_else(stack: Stack, api: ApiClient) -> None:
    # GIVEN a token the HTTP API issued at registration
    status, session = api.call(
        "POST",
        "/api/v1/auth/register",
        body={"username": "ada", "email": "ada@example.com", "password": "correct-horse-battery"},
    )
    assert status == 201
    handler, event = load_handler("ws_authorizer").handler, load_event("ws-authorizer-connect.json")
    event["queryStringParameters"]["token"] = session["token"]

    # THEN the authorizer (its own function, reading the same secret) allows the connection for that user
    answer = handler(event, FakeContext("ws-authorizer"))
    assert answer["principalId"] == session["user"]["user_id"]
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    # AND a token one character off fails with the message API Gateway answers 401 for
    event["queryStringParameters"]["token"] = session["token"][:-1] + (
        "A" if session["token"][-1] != "A" else "B"
    )
    with pytest.raises(Exception, match=r"^Unauthorized$"):
        handler(event, FakeContext("ws-authorizer"))
