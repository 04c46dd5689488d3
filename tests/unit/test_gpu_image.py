"""The GPU image uses its GPU: the base image's CUDA major (and cuDNN) is the one the pinned onnxruntime-gpu
was built for, the pins agree everywhere they are written, TensorRT's libraries are pinned to the major
ONNX Runtime's TensorRT provider links and built for the same CUDA major, and the image marks itself as a
GPU image (the worker then refuses the CPU provider unless PHOTOPIPE_ALLOW_CPU=1).

Read from the files, no Docker: `infra/gpu-worker/Dockerfile`, `constraints.txt`, `onnxruntime-gpu.json` (what
the pinned wheel needs, read from the wheel), pyproject's `gpu` extra, and the CUDA kernel table the exporter
checks graphs against."""

from __future__ import annotations

import json
import re
import tomllib
from typing import Any

from photopipe.settings import WorkerSettings
from photopipe_export.kernels import load_table
from tests.conftest import ROOT

IMAGE_DIR = ROOT / "infra" / "gpu-worker"


def _dockerfile() -> str:
    return (IMAGE_DIR / "Dockerfile").read_text(encoding="utf-8")


def _wheel() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((IMAGE_DIR / "onnxruntime-gpu.json").read_text(encoding="utf-8"))
    return data


def _pins() -> dict[str, str]:
    pins = {}
    for line in (IMAGE_DIR / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    return pins


def _base_image() -> tuple[int, str]:
    """(CUDA major, tag) of the Dockerfile's FROM nvidia/cuda image."""
    froms = re.findall(r"^FROM\s+(\S+)", _dockerfile(), flags=re.MULTILINE)
    assert len(froms) == 1, froms
    match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.(\d+)-(\S+)", froms[0])
    assert match, froms[0]
    return int(match.group(1)), match.group(4)


def _env() -> dict[str, str]:
    """The variables the Dockerfile's ENV instructions set (continuation lines joined, comments dropped)."""
    logical = re.sub(r"\\\n", " ", _dockerfile())
    env: dict[str, str] = {}
    for line in logical.splitlines():
        if line.startswith("ENV "):
            env.update(re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", line))
    return env


def _gpu_extra_pin() -> str:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    (pin,) = [d for d in extras["gpu"] if d.startswith("onnxruntime-gpu")]
    assert "==" in pin, f"onnxruntime-gpu must be pinned exactly in the gpu extra, not {pin!r}"
    return pin.split("==")[1]


def test_the_base_image_cuda_major_is_the_one_onnxruntime_gpu_was_built_for() -> None:
    cuda_major, variant = _base_image()
    wheel = _wheel()

    assert cuda_major == int(wheel["cuda_version"].split(".")[0]) == 13
    # the CUDA provider's libraries carry the same major in their sonames
    needed = wheel["needs"]["libonnxruntime_providers_cuda.so"]
    assert f"libcudart.so.{cuda_major}" in needed
    assert f"libcublas.so.{cuda_major}" in needed
    # cuDNN (the convolutions) comes with the base image, at the major ONNX Runtime loads
    assert variant.startswith("cudnn-runtime-"), variant
    assert f"libcudnn.so.{wheel['cudnn_major']}" in wheel["needs"]["libonnxruntime_providers_tensorrt.so"]


def test_onnxruntime_gpu_is_pinned_to_one_version_everywhere() -> None:
    version = _wheel()["version"]
    assert _gpu_extra_pin() == version
    assert _pins()["onnxruntime-gpu"] == version
    # the op-coverage test checks the exported graphs against this version's CUDA kernel table
    assert load_table().source["onnxruntime_gpu"] == version
    assert "-c constraints.txt" in _dockerfile()


def test_tensorrt_libraries_are_pinned_to_the_major_and_cuda_onnxruntime_links() -> None:
    cuda_major, _ = _base_image()
    wheel = _wheel()
    pins = _pins()
    (name,) = [p for p in pins if p.startswith("tensorrt")]
    version = pins[name]

    assert name == f"tensorrt-cu{cuda_major}-libs"  # TensorRT built for the image's CUDA major
    assert int(version.split(".")[0]) == wheel["tensorrt_major"]
    assert (
        f"libnvinfer.so.{wheel['tensorrt_major']}" in wheel["needs"]["libonnxruntime_providers_tensorrt.so"]
    )
    dockerfile = _dockerfile()
    # installed when the TensorRT provider is on (the default), and put on the loader path
    assert re.search(r"^ARG TENSORRT=1$", dockerfile, flags=re.MULTILINE)
    assert f"pip install -c constraints.txt --extra-index-url https://pypi.nvidia.com {name}" in dockerfile
    assert f"libnvinfer.so.{wheel['tensorrt_major']}" in dockerfile
    assert "ldconfig" in dockerfile


def test_the_image_is_marked_as_a_gpu_image_and_the_local_worker_is_not() -> None:
    env = _env()
    assert env["PHOTOPIPE_REQUIRE_GPU"] == "1"
    assert "PHOTOPIPE_ALLOW_CPU" not in env  # an operator's explicit choice, never the image's
    base = {
        "MEDIA_BUCKET": "m",
        "CREDITS_TABLE": "c",
        "JOBS_TABLE": "j",
        "WORKERS_TABLE": "w",
        "GPU_JOBS_QUEUE_URL": "q",
        "PHOTOPIPE_MODEL_DIR": "/models",
    }
    image = WorkerSettings.from_env({**base, **env})
    assert image.require_gpu
    assert not image.allow_cpu
    assert image.max_batch == int(env["PHOTOPIPE_MAX_BATCH"])
    assert WorkerSettings.from_env({**base, **env, "PHOTOPIPE_ALLOW_CPU": "1"}).allow_cpu
    local = WorkerSettings.from_env(base)  # what the local stack's CPU worker runs with
    assert not local.require_gpu
