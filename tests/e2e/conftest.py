"""The local stack, started once per module on free ports, and an HTTP client for it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
import requests
from aws_lambda_powertools.utilities import parameters
from PIL import Image

from photopipe import wiring
from photopipe_local import LocalStack
from tests.conftest import ROOT


@cache
def _astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


def photo_jpeg(size: tuple[int, int], orientation: int = 1) -> bytes:
    """A real photo at `size` as stored (before EXIF orientation), tagged with `orientation`."""
    image = _astronaut().resize(size)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=88, exif=exif.tobytes())
    return buf.getvalue()


@dataclass
class LiveStack:
    stack: LocalStack

    @property
    def api_url(self) -> str:
        return self.stack.api_url

    @property
    def endpoint_url(self) -> str:
        return self.stack.endpoint

    @property
    def bucket(self) -> str:
        return self.stack.name("MediaBucket")

    @property
    def ingest_queue_url(self) -> str:
        return self.stack.ref("IngestQueue")

    @property
    def ingest_dlq_url(self) -> str:
        return self.stack.ref("IngestDeadLetterQueue")

    def wait_idle(self, timeout: float = 60) -> None:
        self.stack.wait_idle(timeout)

    def _headers(self, token: str | None) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return requests.get(self.api_url + path, headers=self._headers(token), timeout=30, **kw)

    def post(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return requests.post(self.api_url + path, headers=self._headers(token), timeout=30, **kw)

    def delete(self, path: str, token: str | None = None, **kw: Any) -> requests.Response:
        return requests.delete(self.api_url + path, headers=self._headers(token), timeout=30, **kw)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveStack]:
    wiring.reset()
    parameters.clear_caches()
    stack = LocalStack(ROOT / "template.yaml", port=0, stack_name="photopipe-e2e", write_state=False)
    with stack:
        yield LiveStack(stack)
    wiring.reset()
    parameters.clear_caches()
