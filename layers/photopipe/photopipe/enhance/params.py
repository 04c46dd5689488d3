"""The request parameters of an enhancement, with the meaning the old GFPGAN service gave them.

The old service (PhotoEnhanceAI) took `scale`, `tile_size` and `quality_level`; they keep their names
and, where it still makes sense, their meaning. `LevelSettings` spells out what a quality level does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

QualityLevel = Literal["fast", "medium", "high"]


@dataclass(frozen=True)
class LevelSettings:
    """What a quality level does, concretely."""

    detect_side: int  # faces are detected on a copy whose long side is at most this many px
    min_face: int  # faces smaller than this (box side, px of the original photo) are left alone
    neural_background: bool  # use the configured Real-ESRGAN upscaler; False: always Lanczos
    feather: float  # paste-back feather width, as a fraction of the 512 px aligned face


LEVELS: dict[str, LevelSettings] = {
    "fast": LevelSettings(detect_side=640, min_face=48, neural_background=False, feather=0.05),
    "medium": LevelSettings(detect_side=1024, min_face=24, neural_background=False, feather=0.08),
    "high": LevelSettings(detect_side=2048, min_face=16, neural_background=True, feather=0.08),
}


class EnhanceParams(BaseModel):
    """How to enhance one photo.

    - `scale` (1-4, default 2): the output is `scale` times the upright input in each dimension. The
      old service accepted 1-16 but its background model was x4 only; above x4 nothing is gained.
      Faces are always restored at 512 px and pasted back at the output size.
    - `tile_size` (128-1024 px, default 400, as before): the edge of the tiles the neural background
      upscaler (Real-ESRGAN ONNX) is run on, so memory stays bounded whatever the photo's size; lower
      it on a small GPU. Lanczos ignores it (it needs no tiling).
    - `quality_level` (default "high", as before):
        - "fast": faces detected on a copy of at most 640 px (long side), only faces of at least 48 px
          in the original are restored, Lanczos background, a narrower paste-back feather (5 % of the
          aligned face).
        - "medium": detection on at most 1024 px, faces from 24 px, Lanczos background, 8 % feather.
        - "high": detection on at most 2048 px, faces from 16 px, the Real-ESRGAN background when one
          is configured (else Lanczos, and the result says so), 8 % feather.
      The old service mapped the levels onto GFPGAN's internal options; here the face model is the
      same at every level (one exported model, batched across jobs on the GPU) and the levels trade
      detection size and the background upscaler instead.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scale: int = Field(default=2, ge=1, le=4)
    tile_size: int = Field(default=400, ge=128, le=1024)
    quality_level: QualityLevel = "high"

    @property
    def level(self) -> LevelSettings:
        return LEVELS[self.quality_level]
