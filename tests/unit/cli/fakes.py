"""A fake photopipe API for the upload engine: the real `Api` with its network calls answered here, and
a storage that keeps what arrives (so tests look at what was uploaded, not at calls)."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Mapping
from typing import IO, Any

from photopipe_cli.api import Api
from photopipe_cli.errors import ApiNotFound, NotLoggedIn
from photopipe_cli.settings import Credential, Server


class FakeApi(Api):
    def __init__(
        self, *, known: Mapping[str, dict[str, Any]] | None = None, token_valid: bool = True
    ) -> None:
        super().__init__(Server("http://127.0.0.1:9", "--api"), Credential("token", "PHOTOPIPE_TOKEN"))
        self.known = dict(known or {})  # sha256 -> classification the cache knows
        self.token_valid = token_valid
        self.stored: dict[str, bytes] = {}  # image_id -> bytes that arrived
        self.declared: dict[str, dict[str, Any]] = {}  # image_id -> the POST /uploads body
        self.records: dict[str, dict[str, Any]] = {}  # image_id -> record for GET /images/{id}
        self._ids = itertools.count(1)

    def _check(self) -> None:
        if not self.token_valid:
            raise NotLoggedIn("your saved session has expired by the fake: log in again")

    def get(self, path: str, *, auth: bool = True, params: Mapping[str, Any] | None = None) -> Any:
        self._check()
        if path.startswith("/images/"):
            image_id = path.removeprefix("/images/")
            if image_id not in self.records:
                raise ApiNotFound(404, "image_not_found", f"no image {image_id!r}")
            return self.records[image_id]
        raise AssertionError(f"unexpected GET {path}")

    def post(self, path: str, body: Any, *, auth: bool = True) -> Any:
        self._check()
        if path == "/classify/check-cache":
            hit = self.known.get(body["sha256"])
            return {"hit": True, "source": "exact_cache", "classification": hit} if hit else {"hit": False}
        if path == "/uploads":
            image_id = f"img{next(self._ids)}"
            self.declared[image_id] = body
            return {
                "image_id": image_id,
                "upload": {"url": f"fake://{image_id}", "fields": {"key": image_id}},
            }
        raise AssertionError(f"unexpected POST {path}")

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
        data = file.read()
        if on_bytes is not None:
            on_bytes(len(data))
        self.stored[fields["key"]] = data


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
