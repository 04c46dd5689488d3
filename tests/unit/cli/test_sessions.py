"""Sessions that last: the saved access token is renewed with the refresh token when it has expired or the
API says so, once, and the new pair is saved; a refused refresh token is "log in again" (exit 3). The API
is answered through requests' transport interface (no socket), the credentials file is real."""

from __future__ import annotations

import json
import stat
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from photopipe_cli.api import Api
from photopipe_cli.errors import CliError, ExitCode
from photopipe_cli.settings import (
    Credential,
    SavedLogin,
    Server,
    credential,
    credentials_file,
    save_login,
    saved_login,
)
from tests.unit.cli.conftest import Run

SERVER = Server("http://127.0.0.1:9", "--api")
USER = {"user_id": "u1", "username": "ada"}


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def session(n: int) -> dict[str, Any]:
    return {
        "token": f"access-{n}",
        "expires_in": 3600,
        "refresh_token": f"refresh-{n}",
        "refresh_expires_in": 30 * 86400,
        "user": USER,
    }


class Server401(BaseAdapter):
    """A tiny API: `/auth/refresh` spends refresh-N for pair N+1 (each once); `/images` answers with the
    scripted statuses in turn, then 200 for a token it accepts. What was sent is kept in `sent`."""

    def __init__(self, *, images: list[tuple[int, Any]] | None = None, refresh_ok: bool = True) -> None:
        super().__init__()
        self.images = list(images or [])
        self.refresh_ok = refresh_ok
        self.spent: set[str] = set()
        self.sent: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        path = (request.path_url or "").split("?")[0].removeprefix("/api/v1")
        body: Any = json.loads(request.body) if isinstance(request.body, str | bytes) else None
        self.sent[path].append({"authorization": request.headers.get("Authorization"), "body": body})
        status: int = 200
        payload: Any = {"items": []}
        if path == "/auth/refresh":
            token = body["refresh_token"]
            if not self.refresh_ok or token in self.spent:
                status, payload = 401, error("invalid_refresh_token", "the refresh token is not valid")
            else:
                self.spent.add(token)
                status, payload = 200, session(int(token.rsplit("-", 1)[1]) + 1)
        elif self.images:
            status, payload = self.images.pop(0)
        response = requests.Response()
        response.status_code = status
        response.url = request.url or ""
        response.request = request
        response._content = json.dumps(payload).encode()
        return response

    def close(self) -> None:
        pass


def saved(
    access: str = "access-1", *, expired: bool = False, refresh: str | None = "refresh-1"
) -> SavedLogin:
    expires = datetime.now(UTC) + (timedelta(hours=-1) if expired else timedelta(hours=1))
    login = SavedLogin(
        token=access,
        username="ada",
        user_id="u1",
        expires_at=expires.isoformat(timespec="seconds"),
        refresh_token=refresh,
    )
    save_login(SERVER, login)
    return login


def api_with(server: Server401) -> Api:
    api = Api(SERVER, credential(SERVER))
    api.session.mount("http://", server)
    return api


def test_an_expired_access_token_is_renewed_before_the_request_and_the_new_pair_is_saved(home: Path) -> None:
    # GIVEN a saved session whose access token has expired
    saved(expired=True)
    server = Server401()

    # WHEN a command calls the API
    api_with(server).get("/images")

    # THEN the refresh token was spent once, the request carried the new token, and the new pair is kept
    assert [s["body"] for s in server.sent["/auth/refresh"]] == [{"refresh_token": "refresh-1"}]
    assert [s["authorization"] for s in server.sent["/images"]] == ["Bearer access-2"]
    kept = saved_login(SERVER)
    assert kept is not None
    assert (kept.token, kept.refresh_token, kept.username) == ("access-2", "refresh-2", "ada")
    assert kept.expired() is False
    assert stat.S_IMODE(credentials_file().stat().st_mode) == 0o600


def test_a_401_token_expired_renews_once_and_sends_the_request_again(home: Path) -> None:
    saved()
    server = Server401(images=[(401, error("token_expired", "the token has expired; log in again"))])

    assert api_with(server).get("/images") == {"items": []}

    assert [s["authorization"] for s in server.sent["/images"]] == ["Bearer access-1", "Bearer access-2"]
    assert len(server.sent["/auth/refresh"]) == 1


def test_a_second_401_after_renewing_is_log_in_again_not_a_loop(home: Path) -> None:
    saved()
    expired = (401, error("token_expired", "the token has expired; log in again"))
    server = Server401(images=[expired, expired, expired])

    with pytest.raises(CliError) as info:
        api_with(server).get("/images")

    assert info.value.code is ExitCode.NOT_LOGGED_IN
    assert len(server.sent["/images"]) == 2
    assert len(server.sent["/auth/refresh"]) == 1


def test_a_refused_refresh_token_is_log_in_again_with_exit_code_3(home: Path) -> None:
    saved(expired=True)
    server = Server401(refresh_ok=False)

    with pytest.raises(CliError) as info:
        api_with(server).get("/images")

    assert info.value.code is ExitCode.NOT_LOGGED_IN
    assert info.value.message == (
        "your saved session on http://127.0.0.1:9 has ended (the refresh token is not valid): log in again"
    )
    assert server.sent["/images"] == []


def test_other_401s_are_not_renewed(home: Path) -> None:
    saved()
    server = Server401(images=[(401, error("invalid_token", "the token is not valid"))])

    with pytest.raises(CliError) as info:
        api_with(server).get("/images")

    assert info.value.code is ExitCode.NOT_LOGGED_IN
    assert server.sent["/auth/refresh"] == []


def test_a_token_from_the_environment_is_never_renewed(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved(expired=True)
    monkeypatch.setenv("PHOTOPIPE_TOKEN", "from-env")
    server = Server401(images=[(401, error("token_expired", "the token has expired; log in again"))])

    with pytest.raises(CliError) as info:
        api_with(server).get("/images")

    assert "the token in PHOTOPIPE_TOKEN has expired" in info.value.message
    assert server.sent["/auth/refresh"] == []


def test_a_session_renewed_by_another_process_is_taken_without_spending_the_refresh_token(home: Path) -> None:
    # GIVEN this process holds an expired token, and another process has renewed the saved session since
    stale = saved(expired=True)
    api = Api(SERVER, Credential(stale.token, "saved", stale))
    server = Server401()
    api.session.mount("http://", server)
    saved("access-7", refresh="refresh-7")

    api.get("/images")

    assert server.sent["/auth/refresh"] == []
    assert [s["authorization"] for s in server.sent["/images"]] == ["Bearer access-7"]


def test_a_session_out_is_kept_with_both_expiries() -> None:
    login = SavedLogin.from_session(session(3))
    assert (login.token, login.refresh_token, login.user_id) == ("access-3", "refresh-3", "u1")
    assert login.expires_at is not None
    assert login.refresh_expires_at is not None
    assert datetime.fromisoformat(login.refresh_expires_at) > datetime.fromisoformat(login.expires_at)


def test_an_unknown_expiry_is_not_expired() -> None:
    assert SavedLogin("t").expired() is False
    assert SavedLogin("t", expires_at="not a date").expired() is False


def test_logout_forgets_the_session_even_when_the_server_is_unreachable(run: Run) -> None:
    saved()
    done = run("logout", "--api", SERVER.url, "--json")
    assert done.code == 0
    assert done.json() == {"server": SERVER.url, "logged_out": True, "revoked": False}
    assert "the server did not revoke the session (cannot reach http://127.0.0.1:9" in done.err
    assert saved_login(SERVER) is None
