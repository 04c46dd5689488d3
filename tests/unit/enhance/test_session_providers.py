"""Execution providers, their options and the fallback between them; batch buckets and padding; the
fixed-shape IO binding the GPU path runs through.

No GPU here: the provider plans and options are pure functions, the fallback runs through real ONNX Runtime
sessions (this CPU build does not load the TensorRT or CUDA provider, exactly what happens on a GPU
instance whose libraries are missing), and `BucketRunner` is run with CPU buffers, the same code the CUDA
path runs with device buffers. A small seeded random-weight GFPGAN of the real architecture."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from photopipe.enhance.buckets import bucket_for, bucket_sizes, pad_batch, parse_buckets, plan_batches
from photopipe.enhance.providers import (
    CPU,
    CUDA,
    GRAPH_ID_KEY,
    TENSORRT,
    choose_precision,
    cpu_refusal,
    cuda_options,
    plan_sessions,
    tensorrt_options,
    trt_profile_shapes,
)
from photopipe.enhance.session import BucketRunner, GfpganSession
from photopipe.errors import ConfigurationError
from photopipe.settings import WorkerSettings
from photopipe_export.arch import REDUCED
from photopipe_export.export import FP32_FILE

GPU_BUILD = [TENSORRT, CUDA, CPU]
SIZE = REDUCED.out_size


@pytest.fixture(scope="module")
def model_dir(reduced_gfpgan: Path) -> Path:
    return reduced_gfpgan


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, SIZE, SIZE)).astype(np.float32)


# --------------------------------------------------------------------------------------------- buckets


def test_default_buckets_are_powers_of_two_up_to_the_maximum() -> None:
    assert bucket_sizes(1) == (1,)
    assert bucket_sizes(8) == (1, 2, 4, 8)
    assert bucket_sizes(12) == (1, 2, 4, 8, 12)
    assert bucket_sizes(32) == (1, 2, 4, 8, 16, 32)
    assert parse_buckets(None, 8) == (1, 2, 4, 8)
    assert parse_buckets("32, 8,1,8", 32) == (1, 8, 32)
    with pytest.raises(ValueError, match="must equal the maximum batch"):
        parse_buckets("1,4,16", 32)
    with pytest.raises(ValueError, match="positive"):
        parse_buckets("0,8", 8)


def test_batches_are_chunked_by_the_largest_bucket_and_the_rest_padded() -> None:
    buckets = (1, 2, 4, 8)
    assert [bucket_for(n, buckets) for n in range(1, 9)] == [1, 2, 4, 4, 8, 8, 8, 8]
    assert plan_batches(13, buckets) == [(8, 8), (5, 8)]
    assert plan_batches(16, buckets) == [(8, 8), (8, 8)]
    assert plan_batches(3, buckets) == [(3, 4)]
    assert plan_batches(0, buckets) == []
    faces = _faces(3)
    padded = pad_batch(faces, 4)
    assert padded.shape == (4, 3, SIZE, SIZE)
    assert np.array_equal(padded[:3], faces)
    assert not padded[3].any()
    assert pad_batch(faces, 3) is faces


# ----------------------------------------------------------------------------------- plans and options


def test_plans_go_tensorrt_then_cuda_with_graphs_then_cuda_then_cpu(tmp_path: Path) -> None:
    plans = plan_sessions(GPU_BUILD, buckets=(1, 2, 4, 8), input_size=512, trt_cache_dir=tmp_path)

    assert [p.label for p in plans] == ["tensorrt", "cuda-graphs", "cuda", "cpu"]
    assert [p.provider_names for p in plans] == [
        [TENSORRT, CUDA, CPU],
        [CUDA, CPU],
        [CUDA, CPU],
        [CPU],
    ]
    assert [p.precision for p in plans] == ["fp16", "fp16", "fp16", "fp32"]
    assert [p.cuda_graphs for p in plans] == [False, True, False, False]
    # under TensorRT, CUDA takes what TensorRT rejects, never with graphs (capture needs one provider)
    assert "enable_cuda_graph" not in dict(plans[0].providers)[CUDA]
    assert dict(plans[1].providers)[CUDA]["enable_cuda_graph"] == "1"


def test_plans_follow_what_the_build_offers_and_what_is_asked() -> None:
    assert [p.label for p in plan_sessions([CPU])] == ["cpu"]
    assert [p.label for p in plan_sessions([CUDA, CPU])] == ["cuda-graphs", "cuda", "cpu"]
    assert [p.label for p in plan_sessions(GPU_BUILD, cuda_graphs=False)] == ["tensorrt", "cuda", "cpu"]
    assert [p.label for p in plan_sessions(GPU_BUILD, requested=[CUDA])] == ["cuda-graphs", "cuda", "cpu"]
    assert [p.precision for p in plan_sessions([CUDA, CPU], precision="fp32")] == ["fp32"] * 3
    assert [p.precision for p in plan_sessions([CUDA, CPU], have_precisions=["fp32"])] == ["fp32"] * 3
    with pytest.raises(ValueError, match="not available"):
        plan_sessions([CPU], requested=[TENSORRT])


def test_tensorrt_options_fp16_caches_and_one_profile_over_the_buckets(tmp_path: Path) -> None:
    options = tensorrt_options(
        precision="fp16", cache_dir=tmp_path, input_name="input", buckets=(1, 2, 4, 8, 16, 32), input_size=512
    )
    assert options["trt_fp16_enable"] == "1"
    assert options["trt_engine_cache_enable"] == "1"
    assert options["trt_engine_cache_path"] == str(tmp_path)
    assert options["trt_timing_cache_enable"] == "1"
    assert options["trt_profile_min_shapes"] == "input:1x3x512x512"
    assert options["trt_profile_opt_shapes"] == "input:32x3x512x512"
    assert options["trt_profile_max_shapes"] == "input:32x3x512x512"
    assert trt_profile_shapes("x", (4,), 64)["trt_profile_min_shapes"] == "x:4x3x64x64"
    assert (
        tensorrt_options(precision="fp32", cache_dir=tmp_path, input_name="i", buckets=(1,), input_size=8)[
            "trt_fp16_enable"
        ]
        == "0"
    )


def test_cuda_options() -> None:
    options = cuda_options(cuda_graphs=True, device_id=1)
    assert options == {
        "device_id": "1",
        "cudnn_conv_algo_search": "EXHAUSTIVE",
        "cudnn_conv_use_max_workspace": "1",
        "prefer_nhwc": "1",
        "do_copy_in_default_stream": "1",
        "arena_extend_strategy": "kSameAsRequested",
        "enable_cuda_graph": "1",
    }
    assert "enable_cuda_graph" not in cuda_options(cuda_graphs=False)


def test_precision_choice() -> None:
    assert choose_precision("auto", True, ["fp32", "fp16"]) == "fp16"
    assert choose_precision("auto", False, ["fp32", "fp16"]) == "fp32"
    assert choose_precision("auto", True, ["fp32"]) == "fp32"
    assert choose_precision("fp32", True, ["fp32", "fp16"]) == "fp32"


def test_a_gpu_worker_refuses_the_cpu_unless_allowed() -> None:
    assert cpu_refusal(CUDA, require_gpu=True, allow_cpu=False, available=GPU_BUILD) is None
    assert cpu_refusal(CPU, require_gpu=False, allow_cpu=False, available=[CPU]) is None  # the local stack
    assert cpu_refusal(CPU, require_gpu=True, allow_cpu=True, available=[CPU]) is None
    message = cpu_refusal(CPU, require_gpu=True, allow_cpu=False, available=[CPU])
    assert message is not None
    assert "PHOTOPIPE_ALLOW_CPU=1" in message


# ------------------------------------------------------------------------------ fallback, real sessions


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")  # ONNX Runtime on the missing providers
def test_providers_that_do_not_load_fall_back_in_order_to_the_cpu(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # GIVEN a build that lists TensorRT and CUDA whose libraries do not load (this CPU build)
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_BUILD))

    with caplog.at_level(logging.INFO, logger="photopipe.enhance.session"):
        session = GfpganSession(model_dir, max_batch=4)

    # THEN each GPU plan was tried and skipped with its reason, and the CPU one is used, fp32
    assert [label for label, _ in session.skipped] == ["tensorrt", "cuda-graphs", "cuda"]
    assert all("did not load" in why for _, why in session.skipped)
    assert session.provider == CPU
    assert session.precision == "fp32"
    assert session.runtime["plan"] == "cpu"
    messages = [r.getMessage() for r in caplog.records]
    assert any("session plan tensorrt unavailable" in m for m in messages)
    assert any("provider=CPUExecutionProvider" in m and "plan=cpu" in m for m in messages)
    assert session.restore(_faces(3)).shape == (3, 3, SIZE, SIZE)


@pytest.mark.filterwarnings("ignore:Specified provider:UserWarning")
def test_the_gpu_image_refuses_to_start_on_the_cpu(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort, "get_available_providers", lambda: list(GPU_BUILD))

    with pytest.raises(ConfigurationError, match="PHOTOPIPE_ALLOW_CPU=1") as refused:
        GfpganSession(model_dir, require_gpu=True)
    assert "cuda-graphs" in str(refused.value)  # it says what it tried

    allowed = GfpganSession(model_dir, require_gpu=True, allow_cpu=True, warmup=False)
    assert allowed.provider == CPU


# --------------------------------------------------------------------------- fixed-shape IO binding


def test_bucket_runner_pads_to_buckets_and_reuses_fixed_buffers(model_dir: Path) -> None:
    # GIVEN the runner the GPU path uses, with host buffers instead of device ones
    session = ort.InferenceSession(str(model_dir / FP32_FILE), providers=[CPU])
    runner = BucketRunner(
        session,
        input_name="input",
        output_name="output",
        dtype=np.dtype(np.float32),
        input_size=SIZE,
        buckets=(1, 2, 4),
        device="cpu",
        cuda_graphs=True,
    )
    addresses = {b: runner.buffers(b) for b in (1, 2, 4)}
    faces = _faces(3, seed=4)

    # WHEN three faces run (padded to four), then one, then three again
    out3 = runner.run(faces)
    out1 = runner.run(faces[:1])
    again = runner.run(faces)

    # THEN the results are the unpadded model's, and each bucket kept its buffers and its graph id
    expected = session.run(["output"], {"input": faces})[0]
    assert out3.shape == (3, 3, SIZE, SIZE)
    np.testing.assert_allclose(out3, expected, atol=1e-5)
    np.testing.assert_allclose(out1, expected[:1], atol=1e-5)
    np.testing.assert_array_equal(again, out3)
    assert runner.runs == {4: 2, 1: 1}
    assert {b: runner.buffers(b) for b in (1, 2, 4)} == addresses
    assert len({a for pair in addresses.values() for a in pair}) == 6  # no two buckets share a buffer
    assert [runner.graph_id(b) for b in (1, 2, 4)] == ["1", "2", "4"]
    assert GRAPH_ID_KEY == "gpu_graph_id"


def test_worker_settings_for_buckets_and_the_gpu_policy() -> None:
    base = {
        "MEDIA_BUCKET": "m",
        "JOBS_TABLE": "j",
        "WORKERS_TABLE": "w",
        "GPU_JOBS_QUEUE_URL": "q",
        "CREDITS_TABLE": "c",
    }
    base["PHOTOPIPE_MODEL_DIR"] = "/models"
    settings = WorkerSettings.from_env(
        {**base, "PHOTOPIPE_MAX_BATCH": "32", "PHOTOPIPE_BATCH_BUCKETS": "32,8,1"}
    )
    assert settings.bucket_list == [1, 8, 32]
    assert settings.cuda_graphs
    assert WorkerSettings.from_env(base).bucket_list is None  # default: powers of two up to the maximum
    with pytest.raises(ConfigurationError, match="PHOTOPIPE_BATCH_BUCKETS"):
        WorkerSettings.from_env({**base, "PHOTOPIPE_MAX_BATCH": "32", "PHOTOPIPE_BATCH_BUCKETS": "1,16"})
    assert not WorkerSettings.from_env({**base, "PHOTOPIPE_CUDA_GRAPHS": "0"}).cuda_graphs
