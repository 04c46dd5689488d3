"""The HTTP API, as the commands use it: JSON in and out, errors turned into `CliError`s once, here.

- Unreachable server, timeouts: "cannot reach ..." with what to do (exit 1).
- 401 on a call made with a token: "... log in again" (exit 3); no token at all: "not logged in" (exit 3).
- 404: the API's message (exit 4). Anything else: the API's message (exit 1).

A saved session renews itself: when its access token has expired (or is about to), or the API answers 401
`token_expired`, the refresh token is spent once at `/auth/refresh`, the new pair saved and the request sent
again. A refused refresh token is "log in again" (exit 3). `PHOTOPIPE_TOKEN` is never renewed.

One `requests.Session` per thread (uploads run on several), all with the same token; renewing is done by
one thread at a time (the others then use its token) and, across processes, under `credentials_lock()`."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from photopipe_cli.errors import ApiError, ApiNotFound, CliError, ExitCode, NotLoggedIn
from photopipe_cli.settings import Credential, SavedLogin, Server

if TYPE_CHECKING:
    import requests

CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60
TRANSFER_TIMEOUT_S = 300  # a presigned upload or download: between two blocks, not in total
LOGIN_HINT = "Run `photopipe login` (or `photopipe register`), or set PHOTOPIPE_TOKEN."
REFUSED_REFRESH = (400, 401, 403, 422)  # the refresh token is unknown, spent, expired or malformed


def _user_agent() -> str:
    from photopipe import __version__

    return f"photopipe-cli/{__version__}"


class Api:
    def __init__(self, server: Server, credential: Credential | None = None, *, pool_size: int = 10) -> None:
        self.server = server
        self.credential = credential
        self._pool_size = pool_size
        self._local = threading.local()
        self._renewing = threading.Lock()

    # ---------------------------------------------------------------------------------- plumbing
    @property
    def session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            import requests
            from requests.adapters import HTTPAdapter

            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers["User-Agent"] = _user_agent()
            self._local.session = session
        return session

    def require_login(self) -> Credential:
        if self.credential is None:
            raise NotLoggedIn(f"not logged in to {self.server.url}", hint=LOGIN_HINT)
        return self.credential

    # ---------------------------------------------------------------------------------- sessions
    def _renewable(self) -> bool:
        cred = self.credential
        return bool(cred and cred.source == "saved" and cred.login and cred.login.refresh_token)

    def token(self) -> str:
        """The access token to send now: the saved one, renewed first if it has expired."""
        cred = self.require_login()
        if self._renewable() and cred.login is not None and cred.login.expired():
            return self.renew(stale=cred.token)
        return cred.token

    def renew(self, *, stale: str) -> str:
        """Replace the access token `stale` with a new one from the refresh token; returns the new one.
        If another thread (or process) renewed it meanwhile, its token is taken and nothing is spent."""
        from photopipe_cli.settings import credentials_lock, save_login, saved_login

        with self._renewing:
            cred = self.require_login()
            if cred.token != stale:
                return cred.token
            with credentials_lock():
                saved = saved_login(self.server)
                if saved is not None and saved.token != stale and not saved.expired():
                    login = saved  # another photopipe process renewed it first
                else:
                    login = self._refresh(saved or cred.login)
                    save_login(self.server, login)
            self.credential = Credential(login.token, "saved", login)
            return login.token

    def _refresh(self, login: SavedLogin | None) -> SavedLogin:
        if login is None or not login.refresh_token:
            raise NotLoggedIn(f"your saved session on {self.server.url} cannot be renewed", hint=LOGIN_HINT)
        response = self._send(
            "POST",
            self.server.api + "/auth/refresh",
            json={"refresh_token": login.refresh_token},
            timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
        )
        if response.status_code in REFUSED_REFRESH:
            _code, message = _error_body(response)
            raise NotLoggedIn(
                f"your saved session on {self.server.url} has ended ({message}): log in again",
                hint="Run `photopipe login`.",
            )
        if response.status_code >= 400:
            raise self._error(response, auth=False)
        session = _json(response)
        if not isinstance(session, dict) or not isinstance(session.get("token"), str):
            raise CliError(f"{self.server.url} answered /auth/refresh without a token")
        return SavedLogin.from_session(session)

    # ---------------------------------------------------------------------------------- requests
    def request(
        self,
        method: str,
        path: str,
        *,
        auth: bool = True,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        allow_redirects: bool = True,
    ) -> requests.Response:
        """`method` on `/api/v1{path}`; returns a 2xx/3xx response, raises `CliError` for anything else."""
        token = self.token() if auth else None
        url = self.server.api + path
        send: dict[str, Any] = {
            "json": json,
            "params": {k: v for k, v in (params or {}).items() if v is not None},
            "timeout": (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            "allow_redirects": allow_redirects,
        }
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self._send(method, url, headers=headers, **send)
        if (
            token is not None
            and response.status_code == 401
            and self._renewable()
            and _error_body(response)[0] == "token_expired"
        ):
            # expired before our clock said so (clock skew, a shorter TTL on the server): renew once, retry
            headers = {"Authorization": f"Bearer {self.renew(stale=token)}"}
            response = self._send(method, url, headers=headers, **send)
        if response.status_code >= 400:
            raise self._error(response, auth=auth)
        return response

    def send_to(self, method: str, url: str, *, json: Any = None) -> requests.Response:
        """`method` on a URL outside `/api/v1` (the local stack's sandbox), no token; the response as it
        came (the caller reads its status). Unreachable or timed out: `CliError`, as for any call."""
        return self._send(method, url, json=json, timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S))

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        import requests

        try:
            return self.session.request(method, url, **kwargs)
        except requests.exceptions.ConnectionError as e:
            raise CliError(
                f"cannot reach {self._origin(url)} ({_reason(e)})",
                hint="Is the server running? Start the local stack with `make run`, or choose another "
                "server with --api URL or `photopipe config set api URL`.",
            ) from e
        except requests.exceptions.Timeout as e:
            raise CliError(f"{self._origin(url)} did not answer in time ({_reason(e)}); try again") from e
        except requests.exceptions.RequestException as e:
            raise CliError(f"request to {self._origin(url)} failed: {_reason(e)}") from e

    @staticmethod
    def _origin(url: str) -> str:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"

    def _error(self, response: requests.Response, *, auth: bool) -> CliError:
        code, message = _error_body(response)
        if response.status_code == 401 and auth:
            where = (
                "the token in PHOTOPIPE_TOKEN"
                if self.credential and self.credential.source == "PHOTOPIPE_TOKEN"
                else "your saved session"
            )
            what = "has expired" if code == "token_expired" else "was refused"
            hint = (
                "Unset PHOTOPIPE_TOKEN or set a fresh token, then try again."
                if self.credential and self.credential.source == "PHOTOPIPE_TOKEN"
                else "Run `photopipe login`."
            )
            return ApiError(
                401,
                code,
                f"{where} {what} by {self.server.url} ({message}): log in again",
                hint=hint,
                code=ExitCode.NOT_LOGGED_IN,
            )
        if response.status_code == 404:
            return ApiNotFound(404, code, message)
        return ApiError(response.status_code, code, message)

    # ------------------------------------------------------------------------------------- JSON
    def get(self, path: str, *, auth: bool = True, params: Mapping[str, Any] | None = None) -> Any:
        return _json(self.request("GET", path, auth=auth, params=params))

    def post(self, path: str, body: Any, *, auth: bool = True) -> Any:
        return _json(self.request("POST", path, auth=auth, json=body))

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    # -------------------------------------------------------------------------------- transfers
    def post_form(
        self,
        url: str,
        fields: Mapping[str, str],
        file: IO[bytes],
        *,
        filename: str,
        content_type: str,
        on_bytes: Callable[[int], None] | None = None,
    ) -> None:
        """A presigned POST: `fields`, then the file as form field `file` (last, as S3 wants), streamed
        from `file` with its Content-Length; `on_bytes(n)` after each block sent."""
        from requests_toolbelt import MultipartEncoder, MultipartEncoderMonitor

        encoder = MultipartEncoder(fields=[*fields.items(), ("file", (filename, file, content_type))])
        sent = 0

        def progress(monitor: MultipartEncoderMonitor) -> None:
            nonlocal sent
            if on_bytes is not None and monitor.bytes_read > sent:
                on_bytes(monitor.bytes_read - sent)
            sent = monitor.bytes_read

        monitor = MultipartEncoderMonitor(encoder, progress)
        response = self._send(
            "POST",
            url,
            data=monitor,
            headers={"Content-Type": monitor.content_type},
            timeout=(CONNECT_TIMEOUT_S, TRANSFER_TIMEOUT_S),
        )
        if response.status_code >= 300:
            raise CliError(
                f"the storage refused the upload of {filename} (HTTP {response.status_code}: "
                f"{_storage_message(response)})"
            )

    def download(
        self, url: str, out: IO[bytes], *, on_bytes: Callable[[int], None] | None = None
    ) -> requests.Response:
        """GET a presigned (or redirecting) `url` into `out`, streamed. No token is sent."""
        response = self._send("GET", url, stream=True, timeout=(CONNECT_TIMEOUT_S, TRANSFER_TIMEOUT_S))
        with response:
            if response.status_code >= 400:
                raise CliError(
                    f"the download failed (HTTP {response.status_code}: {_storage_message(response)})"
                )
            for block in response.iter_content(chunk_size=256 * 1024):
                out.write(block)
                if on_bytes is not None:
                    on_bytes(len(block))
        return response


def _json(response: requests.Response) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError as e:
        raise CliError(
            f"{response.url} answered HTTP {response.status_code} with something that is not JSON"
        ) from e


def _error_body(response: requests.Response) -> tuple[str, str]:
    try:
        body = response.json()
        error = body["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        text = " ".join(response.text.split())[:200]
        return f"http_{response.status_code}", f"HTTP {response.status_code} from {response.url}" + (
            f": {text}" if text else ""
        )


def _storage_message(response: requests.Response) -> str:
    import re

    text = response.text
    found = re.search(r"<Message>(.*?)</Message>", text, re.S)
    return (found.group(1) if found else " ".join(text.split())[:200]) or response.reason


def _reason(error: Exception) -> str:
    """The innermost cause of a requests error, in a few words (not urllib3's repr)."""
    inner: BaseException = error
    while inner.__context__ is not None and inner.__context__ is not inner:
        inner = inner.__context__
    text = str(inner) or type(inner).__name__
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host"
    return text.split(": ", 1)[-1][:200]


def save_to(path: Path, api: Api, url: str, on_bytes: Callable[[int], None] | None = None) -> int:
    """Download `url` to `path` through a temporary file (no half-written file is left behind)."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        import os

        with os.fdopen(fd, "wb") as f:
            api.download(url, f, on_bytes=on_bytes)
            size = f.tell()
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return size
