"""How the API's answers become what a user reads and the exit code: through requests' own transport
interface (an adapter that answers here), so no socket is opened."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from photopipe_cli.api import Api
from photopipe_cli.errors import CliError, ExitCode, NotFound
from photopipe_cli.settings import Credential, SavedLogin, Server

SERVER = Server("http://127.0.0.1:9", "--api")


class Answer(BaseAdapter):
    """Answers every request with one canned response, or raises one requests exception."""

    def __init__(
        self, status: int = 200, body: Any = None, *, text: str | None = None, error: Exception | None = None
    ) -> None:
        super().__init__()
        self.status, self.body, self.text, self.error = status, body, text, error

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if self.error is not None:
            raise self.error
        response = requests.Response()
        response.status_code = self.status
        response.url = request.url or ""
        response.request = request
        payload = self.text if self.text is not None else json.dumps(self.body)
        response._content = payload.encode()
        return response

    def close(self) -> None:
        pass


def api_answering(answer: Answer, source: str = "saved") -> Api:
    credential = Credential("tok", source, SavedLogin("tok") if source == "saved" else None)
    api = Api(SERVER, credential)
    api.session.mount("http://", answer)
    return api


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def caught(api: Api, path: str = "/images/abc", **kwargs: Any) -> CliError:
    with pytest.raises(CliError) as info:
        api.get(path, **kwargs)
    return info.value


def test_an_expired_token_says_log_in_again_with_exit_code_3() -> None:
    e = caught(api_answering(Answer(401, error("token_expired", "the token has expired; log in again"))))
    assert e.code is ExitCode.NOT_LOGGED_IN
    assert e.message.startswith("your saved session has expired by http://127.0.0.1:9")
    assert e.message.endswith(": log in again")
    assert e.hint == "Run `photopipe login`."


def test_a_refused_token_from_the_environment_names_the_variable() -> None:
    e = caught(
        api_answering(Answer(401, error("invalid_token", "the token is not valid")), source="PHOTOPIPE_TOKEN")
    )
    assert e.code is ExitCode.NOT_LOGGED_IN
    assert "the token in PHOTOPIPE_TOKEN was refused" in e.message
    assert e.hint is not None
    assert "PHOTOPIPE_TOKEN" in e.hint


def test_a_wrong_password_is_a_failure_not_a_lost_session() -> None:
    api = api_answering(Answer(401, error("invalid_credentials", "wrong username/email or password")))
    with pytest.raises(CliError) as info:
        api.post("/auth/login", {"username": "ada", "password": "x"}, auth=False)
    assert info.value.code is ExitCode.FAILED
    assert info.value.message == "wrong username/email or password"


def test_not_found_is_exit_code_4_with_the_api_message() -> None:
    e = caught(api_answering(Answer(404, error("image_not_found", "no image 'abc' in your library"))))
    assert isinstance(e, NotFound)
    assert e.code is ExitCode.NOT_FOUND
    assert e.message == "no image 'abc' in your library"


def test_other_api_errors_are_their_message_with_exit_code_1() -> None:
    e = caught(api_answering(Answer(429, error("quota_exceeded", "you have uploaded 500 photos today"))))
    assert (e.code, e.message) == (ExitCode.FAILED, "you have uploaded 500 photos today")


def test_an_answer_that_is_not_the_api_error_shape_is_described() -> None:
    e = caught(api_answering(Answer(502, text="<html><body>Bad Gateway</body></html>")))
    assert e.code is ExitCode.FAILED
    assert (
        e.message
        == "HTTP 502 from http://127.0.0.1:9/api/v1/images/abc: <html><body>Bad Gateway</body></html>"
    )


def test_an_unreachable_server_says_what_to_do() -> None:
    refused = requests.exceptions.ConnectionError(ConnectionRefusedError(111, "Connection refused"))
    e = caught(api_answering(Answer(error=refused)))
    assert e.code is ExitCode.FAILED
    assert e.message == "cannot reach http://127.0.0.1:9 (connection refused)"
    assert e.hint is not None
    assert "make run" in e.hint
    assert "--api URL" in e.hint


def test_a_timeout_says_so() -> None:
    e = caught(api_answering(Answer(error=requests.exceptions.ReadTimeout("read timed out"))))
    assert e.message.startswith("http://127.0.0.1:9 did not answer in time")
