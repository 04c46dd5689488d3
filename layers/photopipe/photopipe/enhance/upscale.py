"""Background upscaling behind `Upscaler`: Lanczos (the default) or a Real-ESRGAN ONNX run in
overlapping tiles, the seams blended, so memory stays bounded whatever the photo's size."""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import onnxruntime as ort

from photopipe.enhance.faces import create_session, sha256_file
from photopipe.enhance.manifest import ManifestError, read_manifest, verified_file
from photopipe.enhance.providers import CPU, GPU_PROVIDERS, TENSORRT, Precision, choose_precision
from photopipe.errors import ConfigurationError

REALESRGAN_EXPORT = "photopipe models export --model realesrgan --weights RealESRGAN_x4plus.pth --out DIR"

logger = logging.getLogger(__name__)


class Upscaler(Protocol):
    def upscale(self, image_rgb: np.ndarray, scale: int) -> np.ndarray:
        """HxWx3 uint8 RGB → (scale·H)x(scale·W)x3 uint8 RGB."""
        ...


def resize_to(image_rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize with the filter suited to the direction: Lanczos up, area-averaging down."""
    if (image_rgb.shape[1], image_rgb.shape[0]) == (width, height):
        return image_rgb
    up = width > image_rgb.shape[1] or height > image_rgb.shape[0]
    interpolation = cv2.INTER_LANCZOS4 if up else cv2.INTER_AREA
    return cv2.resize(image_rgb, (width, height), interpolation=interpolation)


class LanczosUpscaler:
    """Lanczos (8x8 taps) resampling; x1 returns a copy."""

    def upscale(self, image_rgb: np.ndarray, scale: int) -> np.ndarray:
        height, width = image_rgb.shape[:2]
        if scale == 1:
            return image_rgb.copy()
        return resize_to(image_rgb, width * scale, height * scale)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: step tile - overlap, the last tile flush with the end."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(length: int, fade_in: int, fade_out: int) -> np.ndarray:
    """1-D blend weight: rises over `fade_in`, falls over `fade_out`, 1 between (never 0)."""
    weight = np.ones(length, dtype=np.float32)
    if fade_in:
        weight[:fade_in] = (np.arange(fade_in, dtype=np.float32) + 0.5) / fade_in
    if fade_out:
        weight[length - fade_out :] = np.minimum(
            weight[length - fade_out :], ((np.arange(fade_out, dtype=np.float32) + 0.5) / fade_out)[::-1]
        )
    return weight


class TiledOnnxUpscaler:
    """A Real-ESRGAN-style ONNX upscaler (input float32 Nx3xHxW RGB in [0, 1], output the same xits
    native scale), run on tile_sizextile_size tiles overlapping by `overlap` px whose outputs are
    blended with linear ramps across the overlaps. A request for another scale resizes the model's
    output (area-averaging down, Lanczos up), like Real-ESRGAN's `outscale`; x1 skips the model."""

    def __init__(
        self,
        model_path: Path,
        tile_size: int = 400,
        overlap: int = 16,
        *,
        sha256: str | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        if not 0 <= overlap < tile_size // 2:
            raise ValueError("overlap must be at least 0 and under half the tile size")
        if sha256 is not None and sha256_file(model_path) != sha256:
            raise ConfigurationError(f"{model_path} does not match its pinned sha256 {sha256}")
        self.tile_size = tile_size
        self.overlap = overlap
        self.model = model_path.name
        self.precision = "fp32"
        self._session = create_session(model_path, providers)
        self._input = self._session.get_inputs()[0].name
        probe = self._forward(np.zeros((16, 16, 3), dtype=np.float32))
        self.model_scale = probe.shape[0] // 16
        if self.model_scale < 1 or probe.shape[:2] != (16 * self.model_scale, 16 * self.model_scale):
            raise ConfigurationError(f"{model_path.name} does not upscale by an integer factor")

    @classmethod
    def from_model_dir(
        cls,
        model_dir: Path,
        *,
        providers: Sequence[str] | None = None,
        precision: Precision = "auto",
        tile_size: int = 400,
        overlap: int = 16,
    ) -> TiledOnnxUpscaler:
        """The upscaler a model directory's manifest pins (`photopipe models export --model realesrgan`):
        the file's sha256 is checked against the manifest before it is loaded; fp16 when a GPU provider is
        among `providers` and available. TensorRT is left out: tiles at the photo's edges change shape,
        and each new shape would build an engine."""
        try:
            manifest = read_manifest(model_dir)
        except ManifestError as e:
            raise ConfigurationError(
                f"{e} (the upscaler's model: {REALESRGAN_EXPORT})", code="model_missing"
            ) from e
        wanted = [p for p in (providers or [CPU]) if p != TENSORRT]
        on_gpu = any(p in GPU_PROVIDERS and p in ort.get_available_providers() for p in wanted)
        entry = manifest.file(choose_precision(precision, on_gpu, manifest.precisions))
        try:
            path = verified_file(Path(model_dir), entry)
        except ManifestError as e:
            raise ConfigurationError(str(e), code="model_mismatch") from e
        upscaler = cls(path, tile_size, overlap, providers=wanted)
        upscaler.model = manifest.model
        upscaler.precision = entry.precision
        logger.info(
            "background upscaler ready",
            extra={
                "model": manifest.model,
                "file": entry.path,
                "precision": entry.precision,
                "x": upscaler.model_scale,
            },
        )
        return upscaler

    def with_tile_size(self, tile_size: int) -> TiledOnnxUpscaler:
        """The same session, another tile size (a request's `tile_size`)."""
        other = copy.copy(self)
        other.tile_size = tile_size
        other.overlap = min(self.overlap, tile_size // 2 - 1)
        return other

    def _forward(self, tile: np.ndarray) -> np.ndarray:
        """hxwx3 float32 in [0, 1] → (s·h)x(s·w)x3 float32."""
        blob = np.ascontiguousarray(tile.transpose(2, 0, 1)[None])
        (out,) = self._session.run(None, {self._input: blob})[:1]
        return np.asarray(out[0], dtype=np.float32).transpose(1, 2, 0)

    def upscale_native(self, image_rgb: np.ndarray) -> np.ndarray:
        """xmodel_scale, float32 in [0, 1] (unclipped), tile by tile."""
        height, width = image_rgb.shape[:2]
        s = self.model_scale
        src = image_rgb.astype(np.float32) / 255.0
        acc = np.zeros((height * s, width * s, 3), dtype=np.float32)
        weights = np.zeros((height * s, width * s, 1), dtype=np.float32)
        tile_h, tile_w = min(self.tile_size, height), min(self.tile_size, width)
        ys, xs = _starts(height, tile_h, self.overlap), _starts(width, tile_w, self.overlap)
        for y in ys:
            for x in xs:
                out = self._forward(src[y : y + tile_h, x : x + tile_w])
                # fade only where a neighbour overlaps; the overlap with the flush last tile may be wider
                wy = _ramp(
                    tile_h * s,
                    (ys[ys.index(y) - 1] + tile_h - y) * s if y > 0 else 0,
                    (y + tile_h - ys[ys.index(y) + 1]) * s if y != ys[-1] else 0,
                )
                wx = _ramp(
                    tile_w * s,
                    (xs[xs.index(x) - 1] + tile_w - x) * s if x > 0 else 0,
                    (x + tile_w - xs[xs.index(x) + 1]) * s if x != xs[-1] else 0,
                )
                weight = (wy[:, None] * wx[None, :])[:, :, None]
                acc[y * s : (y + tile_h) * s, x * s : (x + tile_w) * s] += out * weight
                weights[y * s : (y + tile_h) * s, x * s : (x + tile_w) * s] += weight
        return acc / weights

    def upscale(self, image_rgb: np.ndarray, scale: int) -> np.ndarray:
        height, width = image_rgb.shape[:2]
        if scale == 1:
            return image_rgb.copy()
        native = np.clip(self.upscale_native(image_rgb) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return resize_to(native, width * scale, height * scale)
