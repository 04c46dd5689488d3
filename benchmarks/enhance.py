"""Face restoration throughput and latency through `GfpganSession`, against the old service's way in the same run.

    .venv/bin/python benchmarks/enhance.py [--model-dir DIR] [--plans tensorrt,cuda-graphs,cuda] [--batches 1,8,32]

Prints one JSON object (stdout carries nothing else), with every figure of issue 13:

- `restore`: faces/s by batch size for each session plan (`tensorrt`, `cuda-graphs`, `cuda`; `cpu` on a machine
  without a GPU), through the production session (buckets = the batch sizes measured, each warmed up first),
  with the provider actually used, the session's start-up time (engine builds, graph captures) and the GPU
  memory the process holds after warm-up;
- `baseline_torch_eager_fp32_batch1`: PyTorch eager fp32 at batch 1 on the same device and architecture (the
  old GFPGAN service's way), and `speedup_vs_baseline` per plan (best batch over the baseline);
- `fp16_error`: the fp16 file's output against the fp32 file's on the same faces and provider (max and mean
  absolute error, finite);
- `photo_1080p_x2`: per-photo latency (p50, p90 over `--photo-runs`) of a 1920x1080 JPEG with one face through
  the whole pipeline (decode, detect, align, restore, Lanczos x2, paste, encode), per stage;
- `worker_overlap`: the real `GpuWorker` (in-memory queue, table and bucket) over `--worker-photos` such photos,
  with the CPU halves overlapping the restore and without (the baseline, same run): the restorer's busy time
  against wall time, and photos/s. On a GPU the restorer's busy time is the GPU's share of the work (its calls
  include the host-device copies); on the CPU the same measurement of the restore call.

The model is `--model-dir` (an exported directory, e.g. `photopipe models export --weights GFPGANv1.4.pth --out
DIR`) or, by default, the full-size v1.4 architecture with seeded random weights exported to a temporary
directory first (speed does not depend on the weight values; the fp16 error does, a little). Defaults are sized
for the machine: on the CPU (2 cores here) batches 1 and 2 and the CPU plan only; with CUDA batches 1 to 32 and
every GPU plan. The target (>= 1,000 faces/s on one H100-class GPU; <= 100 ms p50 for the photo) can only be
checked on one.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "photopipe"))
sys.path.insert(0, str(ROOT))

from photopipe.enhance.providers import CPU, CUDA, TENSORRT  # noqa: E402
from photopipe.enhance.session import GfpganSession  # noqa: E402

TARGET_FACES_PER_S = 1000
TARGET_PHOTO_P50_MS = 100
PLAN_PROVIDERS: dict[str, tuple[list[str], bool]] = {
    "tensorrt": ([TENSORRT, CUDA, CPU], False),
    "cuda-graphs": ([CUDA, CPU], True),
    "cuda": ([CUDA, CPU], False),
    "cpu": ([CPU], False),
}


def _faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3, size, size)).astype(np.float32)


def _rate(run: Callable[[], Any], batch: int, iterations: int) -> dict[str, float]:
    times = []
    for _ in range(iterations):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    median = statistics.median(times)
    return {
        "faces_per_s": round(batch / median, 3),
        "s_per_batch": round(median, 4),
        "iterations": iterations,
    }


def gpu_memory() -> dict[str, Any] | None:
    """This process's GPU memory and the device's, from nvidia-smi (None where there is none)."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        apps = subprocess.run(
            [smi, "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        device = subprocess.run(
            [smi, "--query-gpu=name,memory.used,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return {"error": str(e)}
    mine = [
        int(used)
        for pid, used in (line.split(",") for line in apps.splitlines() if line.strip())
        if int(pid) == os.getpid()
    ]
    name, used, total = (part.strip() for part in device.splitlines()[0].split(","))
    return {
        "gpu": name,
        "process_mib": mine[0] if mine else None,
        "device_used_mib": int(used),
        "device_total_mib": int(total),
    }


def gpu_name() -> str:
    memory = gpu_memory()
    return str(memory.get("gpu", "")) if memory else ""


# ----------------------------------------------------------------------------------------------- restore


def open_plan(model_dir: Path, plan: str, batches: list[int]) -> GfpganSession:
    providers, graphs = PLAN_PROVIDERS[plan]
    return GfpganSession(
        model_dir,
        providers=providers,
        max_batch=max(batches),
        buckets=batches,
        cuda_graphs=graphs,
        trt_cache_dir=Path(tempfile.gettempdir()) / "photopipe-bench-trt",
    )


def bench_plan(model_dir: Path, plan: str, batches: list[int], iterations: int) -> dict[str, Any]:
    """One plan's session, alone on the device (the previous one is gone): start-up, memory, faces/s."""
    started = time.perf_counter()
    session = open_plan(model_dir, plan, batches)
    startup_s = round(time.perf_counter() - started, 1)
    size = session.input_size
    by_batch: dict[str, Any] = {}
    for batch in batches:
        faces = _faces(batch, size)
        session.restore(faces)  # the bucket is warm already; one more run off the clock
        by_batch[str(batch)] = _rate(partial(session.restore, faces), batch, iterations)
    best_batch, best = max(by_batch.items(), key=lambda item: item[1]["faces_per_s"])
    result = {
        **session.runtime,
        "session_create_and_warmup_s": startup_s,
        "gpu_memory": gpu_memory(),
        "faces_per_s_by_batch": by_batch,
        "best_batch": int(best_batch),
        "best_faces_per_s": best["faces_per_s"],
    }
    del session
    gc.collect()
    return result


def baseline_torch_eager(
    model_dir: Path, on_gpu: bool, iterations: int, weights: Path | None
) -> dict[str, Any]:
    """PyTorch eager fp32, batch 1: the old service's way (the same architecture; the official weights when
    `--weights` is given, else the seeded ones the default export uses)."""
    import torch

    from photopipe.enhance.manifest import read_manifest
    from photopipe_export.arch import GfpganConfig, load_model, seeded_model
    from photopipe_export.export import load_weights

    manifest = read_manifest(model_dir)
    config = GfpganConfig(**manifest.config)
    model = load_model(load_weights(weights)[0], config) if weights else seeded_model(config, 0)
    device = "cuda" if on_gpu and torch.cuda.is_available() else "cpu"
    model = model.to(device)
    x = torch.from_numpy(_faces(1, config.out_size)).to(device)

    def run() -> None:
        with torch.no_grad():
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up
    result: dict[str, Any] = {
        "torch": torch.__version__,
        "device": device,
        "batch": 1,
        **_rate(run, 1, iterations),
    }
    if device == "cuda":
        result["gpu_memory_peak_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
    elif on_gpu:
        result["note"] = "this torch build has no CUDA: the baseline ran on the CPU"
    return result


def fp16_error(model_dir: Path, provider: str, faces: int) -> dict[str, Any]:
    """The fp16 file against the fp32 file, same faces, same provider (no graphs: two short-lived sessions)."""
    providers = [provider, CPU] if provider != CPU else [CPU]
    results: dict[str, np.ndarray] = {}
    used = provider
    for precision in ("fp32", "fp16"):
        session = GfpganSession(
            model_dir,
            providers=providers,
            precision=precision,
            max_batch=faces,
            cuda_graphs=False,
            warmup=False,
        )
        results[precision] = session.restore(_faces(faces, session.input_size, seed=7))
        used = session.provider
        del session
        gc.collect()
    diff = np.abs(results["fp16"] - results["fp32"])
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "finite": bool(np.isfinite(results["fp16"]).all()),
        "faces": faces,
        "provider": used,
        "goal_max_abs": 1e-2,
        "met": bool(float(diff.max()) <= 1e-2 and np.isfinite(results["fp16"]).all()),
    }


# ------------------------------------------------------------------------------------------------ photos


def photo_1080p() -> bytes:
    """A 1920x1080 JPEG with one face: scikit-image's astronaut at 1080x1080 over a blurred stretched copy."""
    from PIL import Image, ImageFilter
    from skimage import data

    face = Image.fromarray(data.astronaut()).resize((1080, 1080), Image.Resampling.LANCZOS)
    canvas = face.resize((1920, 1080), Image.Resampling.BILINEAR).filter(ImageFilter.GaussianBlur(24))
    canvas.paste(face, (420, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def photo_latency(session: Any, runs: int) -> dict[str, Any]:
    from photopipe.enhance.faces import MtcnnDetector
    from photopipe.enhance.pipeline import enhance
    from photopipe.enhance.upscale import LanczosUpscaler
    from photopipe.models import EnhanceParams

    data = photo_1080p()
    detector, upscaler, params = MtcnnDetector(), LanczosUpscaler(), EnhanceParams(scale=2)
    enhance(data, params, detector, session, upscaler)  # warm-up (detector sessions, allocations)
    totals, stages = [], []
    faces = 0
    for _ in range(runs):
        started = time.perf_counter()
        result = enhance(data, params, detector, session, upscaler)
        totals.append((time.perf_counter() - started) * 1000)
        stages.append(result.timings)
        faces = result.faces
    p50 = statistics.median(totals)
    return {
        "photo": "1920x1080 JPEG, one face (scikit-image astronaut), scale 2, quality high, Lanczos background",
        "faces": faces,
        "runs": runs,
        "p50_ms": round(p50, 1),
        "p90_ms": round(float(np.percentile(totals, 90)), 1),
        "stage_ms_median": {k: round(statistics.median(s[k] for s in stages), 1) for k in stages[0]},
        "goal_p50_ms": TARGET_PHOTO_P50_MS,
    }


def worker_overlap(session: Any, photos: int, max_batch: int, cpu_threads: int) -> dict[str, Any]:
    """The real worker over `photos` one-face 1080p photos, overlapped and not (the baseline)."""
    from photopipe.enhance.pipeline import PipelineEnhancer
    from photopipe.models import Job, JobState, utcnow_iso
    from photopipe.usecases.enhance_worker import GpuWorker, WorkerConfig
    from tests.fakes.worker import MemoryJobs, MemoryMedia, MemoryQueue

    data = photo_1080p()
    enhancer = PipelineEnhancer()  # MTCNN, Lanczos: the production defaults

    class Restorer:
        input_size = session.input_size

        def __init__(self) -> None:
            self.max_batch = max_batch

        def restore(self, faces: np.ndarray) -> np.ndarray:
            return np.asarray(session.restore(faces))

    def one(overlap: bool) -> dict[str, Any]:
        queue, jobs, media = MemoryQueue(), MemoryJobs(), MemoryMedia()
        for n in range(photos):
            key = f"originals/u/i{n}/p.jpg"
            media.objects[key] = data
            now = utcnow_iso()
            jobs.create(
                Job(
                    job_id=f"j{n}",
                    image_id=f"i{n}",
                    user_id="u",
                    state=JobState.QUEUED,
                    source_key=key,
                    created_at=now,
                    updated_at=now,
                )
            )
            queue.put({"job_id": f"j{n}", "user_id": "u"})
        worker = GpuWorker(
            jobs=jobs,
            media=media,
            queue=queue,
            restorer=Restorer(),
            enhancer=enhancer,
            config=WorkerConfig(
                worker_id="bench",
                poll_wait_s=0,
                batch_wait_s=0.05,
                cpu_threads=cpu_threads,
                overlap=overlap,
                max_messages=10,
            ),
        )
        started = time.perf_counter()
        thread = threading.Thread(target=worker.run)
        thread.start()
        while any(not jobs.items[f"j{n}"].terminal for n in range(photos)):
            time.sleep(0.01)
        wall = time.perf_counter() - started
        worker.stop()
        thread.join()
        done = sum(jobs.items[f"j{n}"].state == JobState.COMPLETED for n in range(photos))
        return {
            "completed": done,
            "wall_s": round(wall, 2),
            "restore_busy_s": round(worker.restore_busy_s, 2),
            "busy_fraction": round(worker.restore_busy_s / wall, 3),
            "photos_per_s": round(photos / wall, 3),
        }

    serial = one(overlap=False)
    overlapped = one(overlap=True)
    return {
        "photos": photos,
        "faces_per_photo": 1,
        "max_batch": max_batch,
        "cpu_threads": cpu_threads,
        "overlap": overlapped,
        "serial": serial,
        "speedup": round(serial["wall_s"] / overlapped["wall_s"], 2),
    }


# -------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="an exported model (default: export a seeded one)")
    parser.add_argument(
        "--weights", type=Path, help="the .pth the model was exported from (for the baseline)"
    )
    parser.add_argument("--plans", help="comma-separated: tensorrt, cuda-graphs, cuda, cpu")
    parser.add_argument(
        "--batches", help="comma-separated batch sizes (default: 1,2 on the CPU; 1..32 with CUDA)"
    )
    parser.add_argument("--iterations", type=int, help="timed runs per batch size")
    parser.add_argument("--photo-runs", type=int, help="runs of the 1080p photo")
    parser.add_argument("--worker-photos", type=int, help="photos through the worker, per mode")
    parser.add_argument("--no-baseline", action="store_true", help="skip the PyTorch eager baseline")
    parser.add_argument("--no-photo", action="store_true", help="skip the photo latency and the worker")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)  # stderr; stdout is the JSON only
    from photopipe.observability import logger as service_logger

    handler = service_logger.registered_handler  # the worker's structured logs: stdout by default
    if isinstance(handler, logging.StreamHandler):
        handler.setStream(sys.stderr)
    service_logger.setLevel(logging.WARNING)

    import onnxruntime as ort

    available = ort.get_available_providers()
    if CUDA in available and hasattr(ort, "preload_dlls"):
        # CUDA and cuDNN from pip's nvidia-* wheels (onnxruntime-gpu[cuda,cudnn]) when the host has no toolkit
        ort.preload_dlls()
    on_gpu = CUDA in available and gpu_memory() is not None
    plans = (
        args.plans.split(",") if args.plans else (["tensorrt", "cuda-graphs", "cuda"] if on_gpu else ["cpu"])
    )
    if not on_gpu:
        plans = [p for p in plans if p == "cpu"] or ["cpu"]
    batches = (
        [int(b) for b in args.batches.split(",")]
        if args.batches
        else ([1, 2, 4, 8, 16, 32] if on_gpu else [1, 2])
    )
    iterations = args.iterations or (20 if on_gpu else 2)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model_dir
        export_s = None
        if model_dir is None:
            from photopipe_export.arch import FULL
            from photopipe_export.export import export_gfpgan

            model_dir = Path(tmp)
            started = time.perf_counter()
            export_gfpgan(None, model_dir, config=FULL, seed=0)
            export_s = round(time.perf_counter() - started, 1)

        restore: dict[str, Any] = {}
        for plan in plans:
            result = bench_plan(model_dir, plan, batches, iterations)
            restore[plan] = result
            if result["plan"] != plan:
                result["note"] = f"the {plan} plan did not open here; measured {result['plan']} instead"
        best_plan = max(restore, key=lambda plan: restore[plan]["best_faces_per_s"])
        best_rate = restore[best_plan]["best_faces_per_s"]

        baseline = (
            None if args.no_baseline else baseline_torch_eager(model_dir, on_gpu, iterations, args.weights)
        )
        error = fp16_error(model_dir, restore[best_plan]["provider"], faces=4 if on_gpu else 1)
        best_session = open_plan(model_dir, best_plan, batches)  # for the photo and the worker
        photo = overlap = None
        if not args.no_photo:
            photo = photo_latency(best_session, args.photo_runs or (50 if on_gpu else 2))
            photo["met"] = photo["p50_ms"] <= TARGET_PHOTO_P50_MS if on_gpu else None
            overlap = worker_overlap(
                best_session,
                photos=args.worker_photos or (64 if on_gpu else 4),
                max_batch=min(best_session.max_batch, 16 if on_gpu else 2),
                cpu_threads=max(2, min(16, os.cpu_count() or 2)),
            )

    name = gpu_name()
    report = {
        "benchmark": "enhance",
        "device": {
            "machine": platform.machine(),
            "cpu_count": os.cpu_count(),
            "gpu": name or None,
        },
        "onnxruntime": ort.__version__,
        "available_providers": available,
        "model_dir": str(args.model_dir)
        if args.model_dir
        else "exported to a temp dir (seeded, full size v1.4)",
        "export_s": export_s,
        "restore": restore,
        "baseline_torch_eager_fp32_batch1": baseline,
        "best_plan": best_plan,
        "speedup_vs_baseline": (
            {plan: round(r["best_faces_per_s"] / baseline["faces_per_s"], 2) for plan, r in restore.items()}
            if baseline
            else None
        ),
        "fp16_error": error,
        "photo_1080p_x2": photo,
        "worker_overlap": overlap,
        "target": {
            "faces_per_s": TARGET_FACES_PER_S,
            "photo_p50_ms": TARGET_PHOTO_P50_MS,
            "device": "one H100-class GPU",
            "measured_here": bool(on_gpu and ("H100" in name or "H200" in name)),
            "met": (best_rate >= TARGET_FACES_PER_S) if on_gpu else None,
        },
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
