"""Stand-ins for the face model and the CPU halves of the pipeline, so the worker's queueing, batching and
state handling run in tests without model files.

`InvertingRestorer` "restores" a face by negating it (an inversion of the colours in [-1, 1]) and keeps
the batch sizes it was given. `FakeEnhancer.prepare` gives each photo a number of faces chosen by the test
(by the photo's bytes) and `finish` writes a real JPEG: the photo scaled by `params.scale`, its colours
inverted when the restored faces were (so a result shows it went through the restorer)."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps

from photopipe.enhance.pipeline import FaceRestorer
from photopipe.models import EnhanceParams

FACE = 512


class InvertingRestorer(FaceRestorer):
    input_size = FACE

    def __init__(self, max_batch: int = 8) -> None:
        self.max_batch = max_batch
        self.calls: list[int] = []  # faces per restore() call

    def restore(self, faces: np.ndarray) -> np.ndarray:
        assert faces.dtype == np.float32
        assert faces.shape[1:] == (3, FACE, FACE)
        assert faces.shape[0] <= self.max_batch
        self.calls.append(int(faces.shape[0]))
        return -faces


@dataclass(frozen=True)
class FakePrepared:
    image: Image.Image
    params: EnhanceParams
    faces: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class FakeEnhanced:
    jpeg: bytes
    width: int
    height: int
    faces: int
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class FakeEnhancer:
    def __init__(self, faces_for: Callable[[bytes], int] = lambda _data: 1) -> None:
        self.faces_for = faces_for
        # Called after each prepare, with the photo's bytes (tests use it to act "during" a job).
        self.after_prepare: Callable[[bytes], None] | None = None
        self.fail_on: Callable[[bytes], bool] = lambda _data: False

    def prepare(self, data: bytes, params: EnhanceParams) -> FakePrepared:
        if self.fail_on(data):
            raise ValueError("this photo cannot be prepared (a test failure)")
        image = Image.open(io.BytesIO(data)).convert("RGB")
        k = self.faces_for(data)
        # Face i is filled with (i + 1) / 10: the split back per job can be checked from the values.
        faces = (
            np.stack([np.full((3, FACE, FACE), (i + 1) / 10, np.float32) for i in range(k)]) if k else None
        )
        prepared = FakePrepared(
            image=image,
            params=params,
            faces=faces if faces is not None else np.zeros((0, 3, FACE, FACE), np.float32),
            timings={"decode": 1.0, "detect": 2.0, "align": 0.5},
        )
        if self.after_prepare is not None:
            self.after_prepare(data)
        return prepared

    def finish(self, prepared: FakePrepared, restored: np.ndarray) -> FakeEnhanced:
        k = prepared.faces.shape[0]
        assert restored.shape == prepared.faces.shape
        assert np.allclose(restored, -prepared.faces), "each job must get back exactly its own faces"
        w, h = prepared.image.size
        out = prepared.image.resize((w * prepared.params.scale, h * prepared.params.scale))
        if k:
            out = ImageOps.invert(out)
        buf = io.BytesIO()
        out.save(buf, "JPEG", quality=85)
        notes = [] if k else ["no face found; the photo was upscaled only"]
        return FakeEnhanced(
            jpeg=buf.getvalue(),
            width=out.width,
            height=out.height,
            faces=k,
            timings={"paste": 1.0, "upscale": 3.0, "encode": 1.5},
            notes=notes,
        )
