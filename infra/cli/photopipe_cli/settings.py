"""Where the client keeps its settings and tokens, and which server it talks to.

- Server: `--api URL`, else `PHOTOPIPE_API_URL`, else `config.json`'s `api` (`photopipe config set api URL`),
  else the local stack (`http://127.0.0.1:3000`). A URL ending in `/api/v1` is taken as its base.
- Files: `config.json` and `credentials.json` in the user's config directory (platformdirs; override with
  `PHOTOPIPE_CONFIG_DIR`); the upload journal in the user's state directory (`PHOTOPIPE_STATE_DIR`).
  `credentials.json` holds one session per server (the access token and the refresh token that renews
  it) and is written with mode 0600 in a 0700 directory; renewing it takes `credentials.lock` so that two
  `photopipe` processes never spend the same refresh token (the server would end the session).
- Token: `PHOTOPIPE_TOKEN`, else the saved token for the server in use."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from photopipe_cli.errors import CliError, UsageProblem

APP_NAME = "photopipe"
DEFAULT_API = "http://127.0.0.1:3000"
API_PREFIX = "/api/v1"
CONFIG_KEYS = {"api": "the API server's base URL, e.g. https://abc123.execute-api.eu-west-1.amazonaws.com"}


def config_dir() -> Path:
    configured = os.environ.get("PHOTOPIPE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir(APP_NAME, appauthor=False))


def state_dir() -> Path:
    configured = os.environ.get("PHOTOPIPE_STATE_DIR")
    if configured:
        return Path(configured).expanduser()
    from platformdirs import user_state_dir

    return Path(user_state_dir(APP_NAME, appauthor=False))


def journal_file() -> Path:
    return state_dir() / "journal.sqlite3"


def config_file() -> Path:
    return config_dir() / "config.json"


def credentials_file() -> Path:
    return config_dir() / "credentials.json"


@contextlib.contextmanager
def credentials_lock() -> Iterator[None]:
    """Held while a session is renewed: one process at a time reads, spends and rewrites the refresh token
    (an advisory `flock`; where there is none, e.g. Windows, nothing is locked)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = config_dir() / "credentials.lock"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def normalize_api_url(url: str) -> str:
    """`http://host:3000/api/v1/` → `http://host:3000`; refuses what is not an http(s) URL."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageProblem(
            f"{url!r} is not an http(s) URL", hint="Give the server's base URL, e.g. http://127.0.0.1:3000"
        )
    path = parts.path.rstrip("/")
    if path.endswith(API_PREFIX):
        path = path[: -len(API_PREFIX)]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


# ----------------------------------------------------------------------------------------- files


def _read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from e
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CliError(f"{path} is not valid JSON ({e}); fix it or delete it") from e
    if not isinstance(data, dict):
        raise CliError(f"{path} should hold a JSON object; fix it or delete it")
    return data


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` atomically, readable by this user only (file 0600, directory 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_config() -> dict[str, Any]:
    return _read_json(config_file())


def write_config(values: dict[str, Any]) -> None:
    write_private_json(config_file(), values)


# -------------------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    url: str  # base URL, no trailing slash, no /api/v1
    source: str  # "--api", "PHOTOPIPE_API_URL", "config", "default"

    @property
    def api(self) -> str:
        return self.url + API_PREFIX


def resolve_server(flag: str | None) -> Server:
    if flag:
        return Server(normalize_api_url(flag), "--api")
    env = os.environ.get("PHOTOPIPE_API_URL")
    if env:
        return Server(normalize_api_url(env), "PHOTOPIPE_API_URL")
    configured = read_config().get("api")
    if isinstance(configured, str) and configured:
        return Server(normalize_api_url(configured), f"config ({config_file()})")
    return Server(DEFAULT_API, "default (the local stack)")


# ---------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class SavedLogin:
    token: str
    username: str | None = None
    user_id: str | None = None
    expires_at: str | None = None  # the access token's expiry (ISO 8601, UTC)
    refresh_token: str | None = None  # spent once at /auth/refresh for the next pair
    refresh_expires_at: str | None = None

    def expired(self, *, margin_s: float = 30.0) -> bool:
        """The access token has expired, or will within `margin_s` (an unknown expiry is not expired)."""
        from datetime import UTC, datetime, timedelta

        if not self.expires_at:
            return False
        try:
            expires = datetime.fromisoformat(self.expires_at)
        except ValueError:
            return False
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=UTC)
        return expires <= datetime.now(UTC) + timedelta(seconds=margin_s)

    @classmethod
    def from_session(cls, session: dict[str, Any]) -> SavedLogin:
        """What to keep of a `SessionOut` (`/auth/register`, `/auth/login`, `/auth/refresh`)."""
        from datetime import UTC, datetime, timedelta

        def after(seconds: object) -> str | None:
            if not isinstance(seconds, int | float | str) or not str(seconds).strip():
                return None
            at = datetime.now(UTC) + timedelta(seconds=int(seconds))
            return at.isoformat(timespec="seconds")

        user = session.get("user") or {}
        return cls(
            token=str(session["token"]),
            username=user.get("username"),
            user_id=user.get("user_id"),
            expires_at=after(session.get("expires_in")),
            refresh_token=session.get("refresh_token"),
            refresh_expires_at=after(session.get("refresh_expires_in")),
        )


@dataclass(frozen=True)
class Credential:
    token: str
    source: str  # "PHOTOPIPE_TOKEN" or "saved"
    login: SavedLogin | None = None


def _logins() -> dict[str, Any]:
    servers = _read_json(credentials_file()).get("servers", {})
    return servers if isinstance(servers, dict) else {}


def saved_login(server: Server) -> SavedLogin | None:
    entry = _logins().get(server.url)
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        return None
    return SavedLogin(
        token=entry["token"],
        username=entry.get("username"),
        user_id=entry.get("user_id"),
        expires_at=entry.get("expires_at"),
        refresh_token=entry.get("refresh_token"),
        refresh_expires_at=entry.get("refresh_expires_at"),
    )


def credential(server: Server) -> Credential | None:
    env = os.environ.get("PHOTOPIPE_TOKEN")
    if env:
        return Credential(env.strip(), "PHOTOPIPE_TOKEN")
    login = saved_login(server)
    return Credential(login.token, "saved", login) if login else None


def save_login(server: Server, login: SavedLogin) -> Path:
    logins = _logins()
    logins[server.url] = {k: v for k, v in vars(login).items() if v is not None}
    write_private_json(credentials_file(), {"servers": logins})
    return credentials_file()


def forget_login(server: Server) -> bool:
    logins = _logins()
    if server.url not in logins:
        return False
    del logins[server.url]
    write_private_json(credentials_file(), {"servers": logins})
    return True
