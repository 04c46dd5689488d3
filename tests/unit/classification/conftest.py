"""Fixtures for the classification tests: a fake DashScope on loopback (the real SDK talks to it through
`DASHSCOPE_HTTP_BASE_URL`), small JPEGs of one colour, and a clock the classifier's budget runs on."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from PIL import Image, ImageStat

from photopipe.classification import DashScopeProvider, OpenAICompatibleProvider
from tests.fakes.dashscope_server import DEFAULT_API_KEY, FakeDashScope

COLOURS = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (40, 60, 200)}


def jpeg(colour: str = "red", size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, COLOURS[colour]).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def mean_colour(image: bytes) -> str:
    """The name of the closest of COLOURS to the photo's mean colour (what the fake 'sees')."""
    with Image.open(io.BytesIO(image)) as im:
        mean = ImageStat.Stat(im.convert("RGB")).mean
    return min(COLOURS, key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], mean, strict=True)))


def answer(category: str, confidence: float = 0.9, reason: str = "A test photo.") -> str:
    return f'{{"category": "{category}", "confidence": {confidence}, "reason": "{reason}"}}'


def by_colour(image: bytes) -> str:
    category = {"red": "foods", "green": "travel_scenery", "blue": "screenshot"}[mean_colour(image)]
    return answer(category, 0.8, f"The photo is mostly {mean_colour(image)}.")


@dataclass
class Clock:
    """A budget that only moves when the classifier sleeps (or a test says so)."""

    left: float
    sleeps: list[float] = field(default_factory=list)

    def time_left(self) -> float:
        return self.left

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.left -= seconds


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDashScope]:
    with FakeDashScope(responder=by_colour) as server:
        monkeypatch.setenv("DASHSCOPE_HTTP_BASE_URL", server.base_url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        monkeypatch.delenv("DASHSCOPE_API_KEY", raising=False)
        yield server


@pytest.fixture
def dashscope() -> DashScopeProvider:
    return DashScopeProvider(DEFAULT_API_KEY)


@pytest.fixture
def openai(fake: FakeDashScope) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(DEFAULT_API_KEY, fake.compatible_base_url, "qwen-vl-plus")
