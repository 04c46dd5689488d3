"""GFPGAN through ONNX Runtime: one session per process, providers chosen explicitly (no torch here).

`GfpganSession` is the `FaceRestorer` the pipeline and the GPU worker use. It verifies the model
directory's manifest (sha256 of the file before it is loaded), picks TensorRT → CUDA → CPU from what this
onnxruntime build offers, logs the choice, uses the fp16 file on a GPU and the fp32 file on the CPU,
binds inputs and outputs on the GPU (`run_with_iobinding`), and warms up once at construction.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import onnxruntime as ort

from photopipe.enhance.manifest import Manifest, ManifestError, read_manifest, verified_file

logger = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16"]

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PREFERENCE = (TENSORRT, CUDA, CPU)
GPU_PROVIDERS = frozenset({TENSORRT, CUDA})


class FaceRestorer(Protocol):
    """Restores aligned faces: float32 Nx3xSxS RGB in [-1, 1] → the same shape and range."""

    input_size: int
    max_batch: int

    def restore(self, faces: np.ndarray) -> np.ndarray: ...


def choose_providers(available: list[str], requested: list[str] | None = None) -> list[str]:
    """The providers to use, best first, always ending with the CPU as the fallback.

    `requested`: an explicit list (each must be available); default TensorRT → CUDA → CPU among those
    `available`."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise ValueError(f"providers {missing} are not available here (available: {available})")
        chosen = list(requested)
    else:
        chosen = [p for p in PREFERENCE if p in available]
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def _provider_options(provider: str, precision: str, sha256: str) -> dict[str, Any]:
    if provider == CUDA:
        return {"prefer_nhwc": "1", "cudnn_conv_algo_search": "EXHAUSTIVE", "do_copy_in_default_stream": "1"}
    if provider == TENSORRT:
        return {
            "trt_fp16_enable": "1" if precision == "fp16" else "0",
            "trt_engine_cache_enable": "1",
            # the model directory may be read-only: engines are cached per model file's sha256
            "trt_engine_cache_path": str(Path(tempfile.gettempdir()) / "photopipe-trt-cache" / sha256[:16]),
        }
    return {}


class GfpganSession:
    """A GFPGAN ONNX model ready to run: `restore(faces)` in chunks of at most `max_batch`."""

    def __init__(
        self,
        model_dir: Path,
        *,
        providers: list[str] | None = None,
        precision: Precision = "auto",
        max_batch: int = 8,
        warmup: bool = True,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch}")
        self.model_dir = Path(model_dir)
        self.manifest: Manifest = read_manifest(self.model_dir)
        chosen = choose_providers(ort.get_available_providers(), providers)
        on_gpu = chosen[0] in GPU_PROVIDERS
        if precision == "auto":
            precision = "fp16" if on_gpu and "fp16" in self.manifest.precisions else "fp32"
        self.precision: str = precision
        entry = self.manifest.file(precision)
        path = verified_file(self.model_dir, entry)  # sha256 checked before the file is used
        self.input_name = entry.inputs[0].name
        self.output_name = entry.outputs[0].name
        self._dtype = np.dtype(entry.inputs[0].dtype)
        self.input_size: int = int(entry.inputs[0].shape[-1])
        self.max_batch: int = max_batch

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(path),
            options,
            providers=[(p, _provider_options(p, precision, entry.sha256)) for p in chosen],
        )
        active = self._session.get_providers()
        self.provider: str = active[0]
        self.providers: list[str] = active
        self._use_iobinding = self.provider in GPU_PROVIDERS
        logger.info(
            "GFPGAN session ready: provider=%s providers=%s precision=%s file=%s max_batch=%d",
            self.provider,
            ",".join(active),
            precision,
            entry.path,
            max_batch,
            extra={"provider": self.provider, "precision": precision, "model_file": entry.path},
        )
        if self.provider != chosen[0]:
            logger.warning(
                "provider %s was requested but onnxruntime fell back to %s", chosen[0], self.provider
            )
        if warmup:
            self.restore(np.zeros((1, 3, self.input_size, self.input_size), np.float32))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if not self._use_iobinding:
            result = self._session.run([self.output_name], {self.input_name: batch})[0]
            return np.asarray(result)
        binding = self._session.io_binding()
        device = "cuda"
        x = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch), device, 0)
        binding.bind_ortvalue_input(self.input_name, x)
        binding.bind_output(self.output_name, device, 0)
        self._session.run_with_iobinding(binding)
        return np.asarray(binding.copy_outputs_to_cpu()[0])

    def restore(self, faces: np.ndarray) -> np.ndarray:
        """float32 Nx3xSxS in [-1, 1] → float32, same shape."""
        faces = np.asarray(faces)
        size = self.input_size
        if faces.ndim != 4 or faces.shape[1:] != (3, size, size):
            raise ValueError(f"expected faces of shape Nx3x{size}x{size}, got {faces.shape}")
        if len(faces) == 0:
            return np.zeros((0, 3, size, size), np.float32)
        outputs = [
            self._run(faces[start : start + self.max_batch].astype(self._dtype, copy=False)).astype(
                np.float32, copy=False
            )
            for start in range(0, len(faces), self.max_batch)
        ]
        return np.concatenate(outputs, axis=0)


__all__ = ["CPU", "CUDA", "TENSORRT", "FaceRestorer", "GfpganSession", "ManifestError", "choose_providers"]
