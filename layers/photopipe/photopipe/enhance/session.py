"""GFPGAN through ONNX Runtime: one session per process, providers chosen explicitly (no torch here).

`GfpganSession` is the `FaceRestorer` the pipeline and the GPU worker use. It verifies the model
directory's manifest (sha256 of a file before it is loaded), then opens the first session plan that works
(`photopipe.enhance.providers`: TensorRT → CUDA with CUDA graphs → CUDA → CPU, from what this onnxruntime
build offers), logs what it uses and why it skipped the others, and warms up at construction: on a GPU
every batch bucket runs (TensorRT engine built, cuDNN algorithms searched, one CUDA graph captured per
bucket) before the first job, on the CPU one face.

On a GPU, faces run in batches padded to the buckets (`photopipe.enhance.buckets`) through fixed-shape
IO bindings on device buffers (`BucketRunner`); on the CPU they run as they come, in chunks of
`max_batch` (padding would only cost time there).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from photopipe.enhance.buckets import bucket_for, pad_batch, parse_buckets
from photopipe.enhance.manifest import Manifest, ManifestError, read_manifest, verified_file
from photopipe.enhance.providers import (
    CPU,
    CUDA,
    GPU_PROVIDERS,
    GRAPH_ID_KEY,
    PREFERENCE,
    TENSORRT,
    Precision,
    SessionPlan,
    choose_providers,
    cpu_refusal,
    plan_sessions,
)
from photopipe.errors import ConfigurationError

logger = logging.getLogger(__name__)

# What ONNX Runtime raises when a provider cannot build or run the graph (its pybind errors are plain
# Exceptions, not RuntimeErrors).
ORT_ERRORS: tuple[type[Exception], ...] = (
    RuntimeError,
    _ort_state.Fail,
    _ort_state.RuntimeException,
    _ort_state.EPFail,
    _ort_state.NotImplemented,
    _ort_state.InvalidArgument,
    _ort_state.InvalidGraph,
)


class FaceRestorer(Protocol):
    """Restores aligned faces: float32 Nx3xSxS RGB in [-1, 1] → the same shape and range."""

    input_size: int
    max_batch: int

    def restore(self, faces: np.ndarray) -> np.ndarray: ...


class SessionUnavailable(Exception):
    """A session plan could not be opened or warmed up; the next plan is tried."""


def default_trt_cache_dir(sha256: str) -> Path:
    """Engines are cached per model file (the model directory may be read-only)."""
    return Path(tempfile.gettempdir()) / "photopipe-trt-cache" / sha256[:16]


@dataclass
class _Slot:
    batch: int
    input: ort.OrtValue
    output: ort.OrtValue
    binding: Any  # ort.IOBinding
    run_options: ort.RunOptions


class BucketRunner:
    """Runs a session on fixed-shape batches only: each bucket has its own input and output buffers on the
    device and an IO binding made once, so every run of a bucket uses the same addresses (what a captured
    CUDA graph replays). A run pads the faces to their bucket, copies them into the bucket's input buffer,
    runs (with the bucket's `gpu_graph_id` when `cuda_graphs`), and copies the real rows of the output back.
    `device` is "cuda" on a GPU; "cpu" works too (the tests use it)."""

    def __init__(
        self,
        session: ort.InferenceSession,
        *,
        input_name: str,
        output_name: str,
        dtype: np.dtype[Any],
        input_size: int,
        buckets: Sequence[int],
        device: str = "cuda",
        device_id: int = 0,
        cuda_graphs: bool = False,
    ) -> None:
        self.session = session
        self.buckets = tuple(buckets)
        self.dtype = dtype
        self.cuda_graphs = cuda_graphs
        self.runs: dict[int, int] = {}  # bucket -> runs
        self._slots: dict[int, _Slot] = {}
        for batch in self.buckets:
            shape = [batch, 3, input_size, input_size]
            x = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, device, device_id)
            y = ort.OrtValue.ortvalue_from_shape_and_type(shape, dtype, device, device_id)
            binding = session.io_binding()
            binding.bind_ortvalue_input(input_name, x)
            binding.bind_ortvalue_output(output_name, y)
            options = ort.RunOptions()
            if cuda_graphs:  # id 0 is reserved by ONNX Runtime; buckets are >= 1
                options.add_run_config_entry(GRAPH_ID_KEY, str(batch))
            self._slots[batch] = _Slot(batch, x, y, binding, options)

    def graph_id(self, batch: int) -> str | None:
        """The CUDA graph a bucket's runs capture and replay (None without graphs)."""
        value = (
            self._slots[batch].run_options.get_run_config_entry(GRAPH_ID_KEY) if self.cuda_graphs else None
        )
        return value or None

    def buffers(self, batch: int) -> tuple[int, int]:
        """The device addresses of a bucket's input and output (fixed for the runner's life)."""
        slot = self._slots[batch]
        return int(slot.input.data_ptr()), int(slot.output.data_ptr())

    def run(self, faces: np.ndarray) -> np.ndarray:
        """faces (n ≤ largest bucket, 3, S, S) in the model's dtype → its output, n rows."""
        n = int(faces.shape[0])
        slot = self._slots[bucket_for(n, self.buckets)]
        slot.input.update_inplace(
            np.ascontiguousarray(pad_batch(faces.astype(self.dtype, copy=False), slot.batch))
        )
        self.session.run_with_iobinding(slot.binding, slot.run_options)
        self.runs[slot.batch] = self.runs.get(slot.batch, 0) + 1
        return np.asarray(slot.output.numpy()[:n])


class GfpganSession:
    """A GFPGAN ONNX model ready to run: `restore(faces)` in chunks of at most `max_batch`."""

    def __init__(
        self,
        model_dir: Path,
        *,
        providers: list[str] | None = None,
        precision: Precision = "auto",
        max_batch: int = 8,
        buckets: str | Sequence[int] | None = None,
        warmup: bool = True,
        cuda_graphs: bool = True,
        trt_cache_dir: Path | None = None,
        require_gpu: bool = False,
        allow_cpu: bool = False,
        device_id: int = 0,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch}")
        self.model_dir = Path(model_dir)
        self.manifest: Manifest = read_manifest(self.model_dir)
        self.buckets: tuple[int, ...] = parse_buckets(buckets, max_batch)
        self.max_batch: int = self.buckets[-1]
        reference = self.manifest.files[0]
        self.input_size: int = int(reference.inputs[0].shape[-1])
        available = ort.get_available_providers()
        plans = plan_sessions(
            available,
            requested=providers,
            precision=precision,
            have_precisions=self.manifest.precisions,
            buckets=self.buckets,
            input_name=reference.inputs[0].name,
            input_size=self.input_size,
            trt_cache_dir=trt_cache_dir or default_trt_cache_dir(reference.sha256),
            cuda_graphs=cuda_graphs,
            device_id=device_id,
        )
        self.skipped: list[tuple[str, str]] = []  # (plan, why) for every plan tried before the one used
        self._verified: dict[str, Path] = {}
        for plan in plans:
            refusal = (
                None
                if plan.on_gpu
                else cpu_refusal(
                    plan.primary, require_gpu=require_gpu, allow_cpu=allow_cpu, available=available
                )
            )
            if refusal:
                tried = "; ".join(f"{label}: {why}" for label, why in self.skipped)
                raise ConfigurationError(refusal + (f" Tried: {tried}" if tried else ""), code="no_gpu")
            try:
                self._open(plan, warmup=warmup, device_id=device_id)
                break
            except SessionUnavailable as e:
                logger.warning("session plan %s unavailable, trying the next: %s", plan.label, e)
                self.skipped.append((plan.label, str(e)))
        else:  # the CPU plan is always last and does not fail this way
            raise ConfigurationError("no ONNX Runtime session could be opened: " + repr(self.skipped))

    # ---------------------------------------------------------------------------------------- opening
    def _file(self, precision: str) -> tuple[Any, Path]:
        entry = self.manifest.file(precision)
        if precision not in self._verified:
            self._verified[precision] = verified_file(self.model_dir, entry)  # sha256 before use
        return entry, self._verified[precision]

    def _open(self, plan: SessionPlan, *, warmup: bool, device_id: int) -> None:
        entry, path = self._file(plan.precision)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            # enable_fallback=0: a provider error must reach us, not silently re-create the session on the CPU
            session = ort.InferenceSession(str(path), options, providers=plan.providers, enable_fallback=0)
        except ORT_ERRORS as e:
            raise SessionUnavailable(f"{type(e).__name__}: {e}") from e
        active = session.get_providers()
        if active[0] != plan.primary:
            raise SessionUnavailable(f"{plan.primary} did not load (ONNX Runtime gave {', '.join(active)})")
        self._session = session
        self.plan = plan
        self.precision: str = plan.precision
        self.provider: str = active[0]
        self.providers: list[str] = active
        self.input_name: str = entry.inputs[0].name
        self.output_name: str = entry.outputs[0].name
        self._dtype = np.dtype(entry.inputs[0].dtype)
        self._runner: BucketRunner | None = None
        if plan.on_gpu:
            self._runner = BucketRunner(
                session,
                input_name=self.input_name,
                output_name=self.output_name,
                dtype=self._dtype,
                input_size=self.input_size,
                buckets=self.buckets,
                device="cuda",
                device_id=device_id,
                cuda_graphs=plan.cuda_graphs,
            )
        logger.info(
            "GFPGAN session ready: provider=%s providers=%s plan=%s precision=%s file=%s max_batch=%d buckets=%s",
            self.provider,
            ",".join(active),
            plan.label,
            plan.precision,
            entry.path,
            self.max_batch,
            ",".join(map(str, self.buckets)) if plan.on_gpu else "none (CPU)",
            extra={
                "provider": self.provider,
                "plan": plan.label,
                "precision": plan.precision,
                "model_file": entry.path,
                "cuda_graphs": plan.cuda_graphs,
                "skipped": [label for label, _ in self.skipped],
            },
        )
        if warmup:
            try:
                self.warm_up()
            except ORT_ERRORS as e:
                raise SessionUnavailable(f"warm-up failed: {type(e).__name__}: {e}") from e

    @property
    def runtime(self) -> dict[str, Any]:
        """What the session runs on, for logs, the benchmark and the fleet."""
        return {
            "provider": self.provider,
            "providers": self.providers,
            "plan": self.plan.label,
            "precision": self.precision,
            "cuda_graphs": self.plan.cuda_graphs,
            "buckets": list(self.buckets) if self.plan.on_gpu else [],
            "skipped": [{"plan": label, "reason": why} for label, why in self.skipped],
        }

    def warm_up(self) -> None:
        """GPU: run every bucket three times (TensorRT builds its engine and cuDNN searches its algorithms
        on the first, ONNX Runtime captures the bucket's CUDA graph after its warm-up runs, the last replays
        it). CPU: one face."""
        size = self.input_size
        if self._runner is None:
            self.restore(np.zeros((1, 3, size, size), np.float32))
            return
        for batch in self.buckets:
            faces = np.zeros((batch, 3, size, size), self._dtype)
            for _ in range(3):
                self._runner.run(faces)

    # ---------------------------------------------------------------------------------------- running
    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._runner is not None:
            return self._runner.run(batch)
        result = self._session.run([self.output_name], {self.input_name: batch})[0]
        return np.asarray(result)

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


__all__ = [
    "CPU",
    "CUDA",
    "GPU_PROVIDERS",
    "PREFERENCE",
    "TENSORRT",
    "BucketRunner",
    "FaceRestorer",
    "GfpganSession",
    "ManifestError",
    "SessionUnavailable",
    "choose_providers",
]
