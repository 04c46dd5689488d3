"""Which ONNX Runtime execution providers a face-model session tries, in which order, with which options.

Pure functions (no session is created here), so the choice and the fallback order are tested on any
machine; `photopipe.enhance.session` opens the plans in order and keeps the first that works.

The order, best first:

1. **TensorRT** (then CUDA, then CPU under it for any node TensorRT rejects): fp16, an engine cache and a
   timing cache on disk (an engine takes minutes to build; a restart reuses it), one optimisation profile
   spanning the worker's batch buckets (ONNX Runtime's TensorRT provider runs one profile, so the range
   min = smallest bucket, opt = max = largest: tuned for full batches, valid for every padded one).
2. **CUDA with CUDA graphs**: cuDNN's exhaustive algorithm search (each bucket's shapes are searched once,
   at warm-up), NHWC kernels (`prefer_nhwc`), copies in the default stream, and one captured graph per
   batch bucket (`gpu_graph_id`), replayed on fixed input/output buffers. Capture needs every compute node
   on the CUDA provider (ONNX Runtime refuses the session otherwise): the exporter checks that each node of
   our graphs has a CUDA kernel.
3. **CUDA without graphs**: the same options; used when capture is refused (another model file) or
   switched off.
4. **CPU**.

A GPU plan whose provider does not come up (a library missing: ONNX Runtime quietly drops a provider it
cannot load) or whose warm-up fails moves on to the next plan; what was used is logged and reported.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PREFERENCE = (TENSORRT, CUDA, CPU)
GPU_PROVIDERS = frozenset({TENSORRT, CUDA})

Precision = Literal["auto", "fp32", "fp16"]
# The run option that names the CUDA graph a run captures or replays (onnxruntime_run_options_config_keys.h).
GRAPH_ID_KEY = "gpu_graph_id"
TRT_WORKSPACE_BYTES = 4 << 30


@dataclass(frozen=True)
class SessionPlan:
    """One way to open the session: providers with their options, best first."""

    label: str  # "tensorrt", "cuda-graphs", "cuda", "cpu"
    providers: list[tuple[str, dict[str, str]]]
    precision: str  # the model file: "fp16" | "fp32"
    cuda_graphs: bool = False  # runs carry a per-bucket gpu_graph_id
    buckets: tuple[int, ...] = ()
    notes: list[str] = field(default_factory=list)

    @property
    def primary(self) -> str:
        return self.providers[0][0]

    @property
    def on_gpu(self) -> bool:
        return self.primary in GPU_PROVIDERS

    @property
    def provider_names(self) -> list[str]:
        return [name for name, _ in self.providers]


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


def choose_precision(precision: Precision, on_gpu: bool, have: Sequence[str]) -> str:
    """`auto`: fp16 on a GPU when the model has an fp16 file, else fp32. An explicit choice is kept."""
    if precision != "auto":
        return precision
    return "fp16" if on_gpu and "fp16" in have else "fp32"


def trt_profile_shapes(input_name: str, buckets: Sequence[int], input_size: int) -> dict[str, str]:
    """TensorRT's optimisation profile over the buckets: min = smallest, opt = max = largest."""

    def shape(batch: int) -> str:
        return f"{input_name}:{batch}x3x{input_size}x{input_size}"

    return {
        "trt_profile_min_shapes": shape(min(buckets)),
        "trt_profile_opt_shapes": shape(max(buckets)),
        "trt_profile_max_shapes": shape(max(buckets)),
    }


def tensorrt_options(
    *,
    precision: str,
    cache_dir: Path,
    input_name: str,
    buckets: Sequence[int],
    input_size: int,
    device_id: int = 0,
) -> dict[str, str]:
    return {
        "device_id": str(device_id),
        "trt_fp16_enable": "1" if precision == "fp16" else "0",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": "1",
        "trt_timing_cache_path": str(cache_dir),
        "trt_max_workspace_size": str(TRT_WORKSPACE_BYTES),
        **trt_profile_shapes(input_name, buckets, input_size),
    }


def cuda_options(*, cuda_graphs: bool, device_id: int = 0) -> dict[str, str]:
    options = {
        "device_id": str(device_id),
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "cudnn_conv_use_max_workspace": "1",
        "prefer_nhwc": "1",
        "do_copy_in_default_stream": "1",
        # a captured graph keeps the memory it ran with: grow the arena by what is asked, no more
        "arena_extend_strategy": "kSameAsRequested",
    }
    if cuda_graphs:
        options["enable_cuda_graph"] = "1"
    return options


def plan_sessions(
    available: list[str],
    *,
    requested: list[str] | None = None,
    precision: Precision = "auto",
    have_precisions: Sequence[str] = ("fp32", "fp16"),
    buckets: Sequence[int] = (1,),
    input_name: str = "input",
    input_size: int = 512,
    trt_cache_dir: Path | None = None,
    cuda_graphs: bool = True,
    device_id: int = 0,
) -> list[SessionPlan]:
    """The sessions to try, in order (see the module doc). `requested` limits and orders the providers
    (`PHOTOPIPE_PROVIDERS`); the CPU plan always comes last."""
    chosen = choose_providers(available, requested)
    plans: list[SessionPlan] = []
    bucket_tuple = tuple(buckets)
    gpu_precision = choose_precision(precision, True, have_precisions)
    cpu_precision = choose_precision(precision, False, have_precisions)
    cache_dir = trt_cache_dir or Path(tempfile.gettempdir()) / "photopipe-trt-cache"
    for index, provider in enumerate(chosen):
        # the providers after this one, for the nodes it does not take (never with CUDA graphs: capture
        # needs one provider for the whole graph)
        tail = [
            (p, cuda_options(cuda_graphs=False, device_id=device_id) if p == CUDA else {})
            for p in chosen[index + 1 :]
        ]
        if provider == TENSORRT:
            trt = tensorrt_options(
                precision=gpu_precision,
                cache_dir=cache_dir,
                input_name=input_name,
                buckets=bucket_tuple,
                input_size=input_size,
                device_id=device_id,
            )
            plans.append(
                SessionPlan("tensorrt", [(TENSORRT, trt), *tail], gpu_precision, buckets=bucket_tuple)
            )
        elif provider == CUDA:
            if cuda_graphs:
                plans.append(
                    SessionPlan(
                        "cuda-graphs",
                        [(CUDA, cuda_options(cuda_graphs=True, device_id=device_id)), *tail],
                        gpu_precision,
                        cuda_graphs=True,
                        buckets=bucket_tuple,
                    )
                )
            plans.append(
                SessionPlan(
                    "cuda",
                    [(CUDA, cuda_options(cuda_graphs=False, device_id=device_id)), *tail],
                    gpu_precision,
                    buckets=bucket_tuple,
                )
            )
        elif provider == CPU:
            plans.append(SessionPlan("cpu", [(CPU, {})], cpu_precision))
        else:  # another provider named explicitly: default options, the rest of the list under it
            plans.append(
                SessionPlan(provider.lower(), [(provider, {}), *tail], gpu_precision, buckets=bucket_tuple)
            )
    return plans


def cpu_refusal(provider: str, *, require_gpu: bool, allow_cpu: bool, available: Sequence[str]) -> str | None:
    """Why a process that must run on a GPU (the GPU image sets `PHOTOPIPE_REQUIRE_GPU=1`) refuses to start
    on `provider`, or None when it may. `PHOTOPIPE_ALLOW_CPU=1` lets it run on the CPU anyway."""
    if provider in GPU_PROVIDERS or not require_gpu or allow_cpu:
        return None
    return (
        f"this worker must run on a GPU but ONNX Runtime gives it {provider} (available providers: "
        f"{', '.join(available) or 'none'}). The CUDA provider did not load: check that the instance has an "
        "NVIDIA GPU and driver, that the container was started with the GPU (ECS resourceRequirements GPU, "
        "docker run --gpus all), and that the image's CUDA major matches onnxruntime-gpu's. "
        "Set PHOTOPIPE_ALLOW_CPU=1 to run on the CPU anyway (seconds per face)."
    )
