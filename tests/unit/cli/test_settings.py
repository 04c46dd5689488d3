"""Which server, which token, and how they are kept: the config file, the credentials file (0600), the
environment, and the commands that change them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from photopipe_cli.errors import UsageProblem
from photopipe_cli.settings import (
    DEFAULT_API,
    SavedLogin,
    Server,
    credential,
    credentials_file,
    forget_login,
    normalize_api_url,
    resolve_server,
    save_login,
    write_config,
)
from tests.unit.cli.conftest import Run

LOCAL = Server("http://127.0.0.1:3000", "default")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_token_file_is_readable_by_its_owner_only(home: Path) -> None:
    os.umask(0o022)  # what most shells have
    path = save_login(LOCAL, SavedLogin(token="t1", username="ada", user_id="u1"))
    assert path == credentials_file()
    assert mode(path) == 0o600
    assert mode(path.parent) == 0o700
    assert json.loads(path.read_text())["servers"]["http://127.0.0.1:3000"]["token"] == "t1"
    # rewriting it (another server's login) keeps it private and keeps the first login
    save_login(Server("https://photos.example.com", "config"), SavedLogin(token="t2"))
    assert mode(path) == 0o600
    first = credential(LOCAL)
    assert first is not None
    assert first.token == "t1"


def test_logins_are_kept_per_server_and_forgotten_one_at_a_time(home: Path) -> None:
    other = Server("https://photos.example.com", "--api")
    save_login(LOCAL, SavedLogin(token="local-token"))
    save_login(other, SavedLogin(token="cloud-token"))
    assert forget_login(LOCAL) is True
    assert credential(LOCAL) is None
    kept = credential(other)
    assert kept is not None
    assert kept.token == "cloud-token"
    assert forget_login(LOCAL) is False


def test_photopipe_token_wins_over_the_saved_login(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    save_login(LOCAL, SavedLogin(token="saved"))
    monkeypatch.setenv("PHOTOPIPE_TOKEN", "from-env")
    found = credential(LOCAL)
    assert found is not None
    assert (found.token, found.source) == ("from-env", "PHOTOPIPE_TOKEN")


def test_the_server_comes_from_the_flag_then_the_environment_then_the_config_then_the_default(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert resolve_server(None).url == DEFAULT_API
    write_config({"api": "https://config.example.com/"})
    assert resolve_server(None).url == "https://config.example.com"
    monkeypatch.setenv("PHOTOPIPE_API_URL", "https://env.example.com")
    assert resolve_server(None).url == "https://env.example.com"
    assert resolve_server("http://flag.example.com:8080").url == "http://flag.example.com:8080"
    assert resolve_server("http://flag.example.com:8080").source == "--api"


@pytest.mark.parametrize(
    ("given", "base"),
    [
        ("http://127.0.0.1:3000/api/v1", "http://127.0.0.1:3000"),
        ("http://127.0.0.1:3000/api/v1/", "http://127.0.0.1:3000"),
        (
            "https://abc.execute-api.eu-west-1.amazonaws.com/",
            "https://abc.execute-api.eu-west-1.amazonaws.com",
        ),
        (" https://photos.example.com/prod ", "https://photos.example.com/prod"),
    ],
)
def test_an_api_url_is_taken_as_its_base(given: str, base: str) -> None:
    assert normalize_api_url(given) == base


@pytest.mark.parametrize("bad", ["127.0.0.1:3000", "ftp://example.com", "http://", "photos"])
def test_what_is_not_an_http_url_is_refused(bad: str) -> None:
    with pytest.raises(UsageProblem):
        normalize_api_url(bad)


# ------------------------------------------------------------------------------------- commands


def test_config_set_and_show(run: Run, home: Path) -> None:
    result = run("config", "set", "api", "https://photos.example.com/api/v1")
    assert result.code == 0
    assert "api = https://photos.example.com" in result.err
    assert result.out == ""
    assert mode(home / "config" / "config.json") == 0o600

    shown = run("config", "show", "--json")
    assert shown.code == 0
    data = shown.json()
    assert data["api"] == "https://photos.example.com"
    assert data["api_source"].startswith("config")
    assert data["login"] is None
    assert data["journal"] == str(home / "state" / "journal.sqlite3")

    assert run("config", "show", "--json", "--api", "http://127.0.0.1:3200").json()["api_source"] == "--api"
    assert run("config", "unset", "api").code == 0
    assert run("config", "show", "--json").json()["api"] == DEFAULT_API


def test_config_refuses_unknown_settings_and_bad_urls(run: Run) -> None:
    unknown = run("config", "set", "colour", "blue")
    assert unknown.code == 2
    assert "unknown setting 'colour'" in unknown.err
    bad = run("config", "set", "api", "ftp://example.com")
    assert bad.code == 2
    assert "not an http(s) URL" in bad.err


def test_commands_that_need_a_login_say_so_with_exit_code_3(run: Run) -> None:
    for args in (
        ["list"],
        ["show", "abc"],
        ["upload", "."],
        ["delete", "abc", "--yes"],
        ["profile"],
        ["stats"],
    ):
        result = run(*args, "--json")
        assert result.code == 3, args
        assert result.out == "", args
        assert "not logged in to http://127.0.0.1:3000" in result.err, args
        assert "photopipe login" in result.err, args


def test_logout_forgets_the_token(run: Run, home: Path) -> None:
    save_login(LOCAL, SavedLogin(token="t", username="ada"))
    assert run("config", "show", "--json").json()["login"]["username"] == "ada"
    result = run("logout")
    assert result.code == 0
    assert "Logged out of http://127.0.0.1:3000" in result.err
    assert run("config", "show", "--json").json()["login"] is None
    again = run("logout", "--json")
    assert (again.code, again.json()) == (
        0,
        {"server": "http://127.0.0.1:3000", "logged_out": False, "revoked": False},
    )
