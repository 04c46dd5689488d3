"""The `photopipe` command against the local stack, each command a real process: sessions that renew
themselves and end on logout, `admin grant|revoke`, `local dlq list|show|redrive`, and credits bought with
`buy` and paid through the WeChat Pay sandbox with `pay simulate` (also followed live with `buy --wait`).
The stack writes its state file here, as `make run` does, so the operator commands find it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from aws_lambda_powertools.utilities import parameters

from photopipe import wiring
from photopipe_local import LocalStack
from tests.conftest import ROOT
from tests.e2e.conftest import LiveStack
from tests.e2e.test_cli_e2e import PASSWORD, Done

pytestmark = pytest.mark.e2e

Cli = Callable[..., Done]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-operator-home")


@pytest.fixture(scope="module")
def live(home: Path) -> Iterator[LiveStack]:
    wiring.reset()
    parameters.clear_caches()
    stack = LocalStack(
        ROOT / "template.yaml", port=0, stack_name="photopipe-cli-ops", state_file=home / "local-stack.json"
    )
    with stack:
        yield LiveStack(stack)
    wiring.reset()
    parameters.clear_caches()


@pytest.fixture(scope="module")
def env(live: LiveStack, home: Path) -> dict[str, str]:
    # nothing of this process's environment that points at AWS or another stack
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("PHOTOPIPE_", "AWS_"))}
    return keep | {
        "PHOTOPIPE_CONFIG_DIR": str(home / "config"),
        "PHOTOPIPE_STATE_DIR": str(home / "state"),
        "PHOTOPIPE_API_URL": live.api_url,
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="module")
def cli(env: dict[str, str], home: Path) -> Cli:
    def run(*args: str, stdin: str = "") -> Done:
        done = subprocess.run(
            [sys.executable, "-m", "photopipe_cli.main", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            cwd=home,
            timeout=300,
            check=False,
        )
        assert "Traceback" not in done.stderr, done.stderr
        return Done(done.returncode, done.stdout, done.stderr)

    return run


def register(cli: Cli, username: str) -> None:
    done = cli(
        "register",
        "--username",
        username,
        "--email",
        f"{username}@example.com",
        "--password-stdin",
        stdin=PASSWORD,
    )
    assert done.code == 0, done.err


def saved(home: Path, live: LiveStack) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads((home / "config" / "credentials.json").read_text())["servers"][
        live.api_url
    ]
    return entry


def rewrite(home: Path, live: LiveStack, **changes: Any) -> None:
    path = home / "config" / "credentials.json"
    data = json.loads(path.read_text())
    data["servers"][live.api_url] |= changes
    path.write_text(json.dumps(data))


def expired_token(live: LiveStack, user: dict[str, Any]) -> str:
    """An access token for `user` signed with the stack's key, expired an hour ago."""
    clients = live.stack.clients
    assert clients is not None
    secret = clients.secretsmanager.get_secret_value(SecretId=live.stack.environment["JWT_SECRET_ID"])
    now = int(time.time()) - 3600
    claims = {
        "sub": user["user_id"],
        "username": user["username"],
        "iss": live.stack.environment.get("JWT_ISSUER", "photopipe"),
        "aud": live.stack.environment.get("JWT_AUDIENCE", "photopipe-api"),
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now,
    }
    return jwt.encode(claims, secret["SecretString"].strip(), algorithm="HS256")


# ------------------------------------------------------------------------------------- sessions
def test_a_session_renews_itself_and_logout_ends_it_on_the_server(
    cli: Cli, live: LiveStack, home: Path
) -> None:
    register(cli, "rosa")
    first = saved(home, live)
    assert first["refresh_token"]
    assert first["refresh_expires_at"] > first["expires_at"]

    # WHEN the server says the access token has expired (our clock did not know): renewed, request sent again
    rewrite(home, live, token=expired_token(live, {"user_id": first["user_id"], "username": "rosa"}))
    profile = cli("profile", "--json")
    assert profile.code == 0, profile.err
    assert profile.json()["user"]["username"] == "rosa"
    second = saved(home, live)
    assert second["refresh_token"] != first["refresh_token"]  # rotated

    # WHEN our clock says it has expired: renewed before the request
    rewrite(home, live, expires_at="2000-01-01T00:00:00+00:00")
    assert cli("credits", "--json").code == 0
    third = saved(home, live)
    assert third["refresh_token"] != second["refresh_token"]
    assert third["expires_at"] > "2001"

    # WHEN logging out: the session is revoked on the server, and forgotten here
    out = cli("logout", "--json")
    assert out.code == 0, out.err
    assert out.json() == {"server": live.api_url, "logged_out": True, "revoked": True}
    refused = live.post("/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert refused.status_code == 401


def test_a_refused_refresh_token_says_log_in_again(cli: Cli, live: LiveStack, home: Path) -> None:
    register(cli, "sven")
    rewrite(home, live, expires_at="2000-01-01T00:00:00+00:00", refresh_token="x" * 43)
    done = cli("list")
    assert (done.code, done.out) == (3, "")
    assert "your saved session on" in done.err
    assert "log in again" in done.err


# ---------------------------------------------------------------------------------------- admin
def test_admin_grant_lets_a_user_read_the_stats_and_revoke_takes_it_back(cli: Cli, home: Path) -> None:
    register(cli, "olga")
    state = ("--state-file", str(home / "local-stack.json"))
    refused = cli("stats")
    assert refused.code == 1
    assert "photopipe admin grant USERNAME" in refused.err

    granted = cli("admin", "grant", "olga", *state, "--json")
    assert granted.code == 0, granted.err
    assert granted.json()["user"]["admin"] is True
    assert cli("stats", "--json").code == 0

    revoked = cli("admin", "revoke", "olga", *state)
    assert revoked.code == 0, revoked.err
    assert "olga is no longer an admin" in revoked.err
    assert cli("stats").code == 1

    unknown = cli("admin", "grant", "nobody-here", *state)
    assert (unknown.code, unknown.out) == (4, "")
    assert "no user named 'nobody-here'" in unknown.err

    no_stack = cli("admin", "grant", "olga", "--state-file", str(home / "missing.json"))
    assert no_stack.code == 1
    assert "no local stack is running" in no_stack.err


# ------------------------------------------------------------------------------------------ dlq
def test_local_dlq_lists_shows_and_redrives_a_dead_letter(cli: Cli, live: LiveStack, home: Path) -> None:
    # GIVEN a dead letter resting in the classify chain's redrive queue, about a photo deleted since
    image_id = uuid.uuid4().hex
    clients = live.stack.clients
    assert clients is not None
    clients.sqs.send_message(
        QueueUrl=live.stack.ref("ClassifyRedriveQueue"), MessageBody=json.dumps({"image_id": image_id})
    )
    state = ("--state-file", str(home / "local-stack.json"))

    listed = cli("local", "dlq", "list", *state, "--json")
    assert listed.code == 0, listed.err
    items = listed.json()["items"]
    assert [(i["queue"], i["subject"]["kind"], i["subject"]["id"]) for i in items] == [
        ("ClassifyRedriveQueue", "image", image_id)
    ]
    message_id = items[0]["message_id"]
    table = cli("local", "dlq", "list", *state, "--queue", "ClassifyQueue")
    assert table.code == 0
    assert table.out.split("\t")[:3] == ["ClassifyRedriveQueue", message_id, f"image {image_id}"]
    assert table.err.strip() == "1 dead letter"

    shown = cli("local", "dlq", "show", message_id, *state)
    assert shown.code == 0, shown.err
    assert f"about       image {image_id}" in shown.out
    assert cli("local", "dlq", "show", "no-such-message", *state).code == 4

    # WHEN it is redriven: back to the classify queue, whose consumer finds the photo gone and is done
    moved = cli("local", "dlq", "redrive", message_id, *state, "--json")
    assert moved.code == 0, moved.err
    assert [m["message_id"] for m in moved.json()["redriven"]] == [message_id]
    live.wait_idle(60)
    assert cli("local", "dlq", "list", *state, "--json").json()["count"] == 0
    assert cli("local", "dlq", "redrive", *state).err.strip() == "nothing to redrive"


# -------------------------------------------------------------------------------------- credits
def test_buy_credits_and_pay_them_through_the_sandbox(cli: Cli) -> None:
    register(cli, "pia")
    start = cli("credits", "--json").json()
    assert start["balance"] == 10  # the free allowance

    listed = cli("packages", "--json")
    assert "credits-10" in {p["package_id"] for p in listed.json()["packages"]}
    assert "credits-10" in cli("buy").out  # no package: the list

    shown = cli("buy", "credits-10")
    assert shown.code == 0, shown.err
    assert "order id" in shown.out
    assert "█" in shown.out  # the QR code
    order = cli("buy", "credits-10", "--json").json()
    assert (order["state"], order["method"], order["package_id"]) == ("pending", "native", "credits-10")
    assert order["code_url"].startswith("weixin://")

    paid = cli("pay", "simulate", order["order_id"], "--json")
    assert paid.code == 0, paid.err
    assert paid.json()["paid"] is True
    after = cli("credits", "--json").json()
    assert after["balance"] == 20
    assert [(e["kind"], e["amount"], e["order_id"]) for e in after["entries"][:1]] == [
        ("purchase", 10, order["order_id"])
    ]
    table = cli("credits")
    assert "balance  20 credits" in table.out
    assert any(line.split("\t")[1:3] == ["purchase", "+10"] for line in table.out.splitlines()[1:])

    assert cli("pay", "simulate", "0" * 32).code == 4
    assert cli("buy", "no-such-package").code == 4


def test_buy_wait_follows_the_order_to_paid(cli: Cli, env: dict[str, str], home: Path) -> None:
    register(cli, "wes")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "photopipe_cli.main", "buy", "credits-10", "--wait", "--timeout", "120"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=home,
    )
    try:
        assert waiting.stdout is not None
        order_id = None
        for line in waiting.stdout:
            if line.startswith("order id"):
                order_id = line.split()[-1]
                break
        assert order_id, "buy printed the order id"
        assert cli("pay", "simulate", order_id).code == 0
        _out, err = waiting.communicate(timeout=120)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert "Traceback" not in err
    assert "Paid: 10 credits added; your balance is 20." in err


def test_pay_simulate_refuses_a_server_without_the_sandbox(cli: Cli, live: LiveStack) -> None:
    # the API's own base (not the gateway) has no sandbox route: what any deployed server answers
    done = cli("pay", "simulate", "0" * 32, "--api", live.api_url + "/api/v1/x")
    assert done.code == 1
    assert "is not a local stack with a WeChat Pay sandbox" in done.err
