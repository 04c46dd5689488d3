"""Restore-stage throughput of GFPGAN through `GfpganSession`, against the old service's way in the same run.

    .venv/bin/python benchmarks/enhance.py [--model-dir DIR] [--batches 1,2,4,8] [--iterations N]

Prints one JSON object. The model is `--model-dir` (an exported model directory, e.g. from
`photopipe models export --weights GFPGANv1.4.pth --out DIR`) or, by default, the full-size v1.4
architecture with seeded random weights exported to a temporary directory first (speed does not depend
on the weight values). Faces/s by batch size goes through `GfpganSession` (providers chosen as in
production: TensorRT → CUDA → CPU; fp16 on a GPU); the baseline is PyTorch eager fp32 at batch 1 on the
same device with the same architecture, the way the old GFPGAN service ran it; `speedup` is the best
batch's faces/s over the baseline's. Default batches: 1, 2, 4, 8 on the CPU, 1 to 64 with CUDA.
The target (>= 1,000 faces/s on one H100) can only be checked on one.

Per-photo stage timings (decode, detect, align, restore, paste, upscale, encode) come from
`photopipe.enhance.pipeline.enhance` on scikit-image's astronaut when that module is present.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "photopipe"))

from photopipe.enhance.session import CPU, GfpganSession  # noqa: E402

TARGET_FACES_PER_S_H100 = 1000


def _faces(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, 3, size, size)).astype(np.float32)


def _rate(run: Any, batch: int, iterations: int) -> dict[str, float]:
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


def baseline_torch_eager(model_dir: Path, device: str, iterations: int, size: int) -> dict[str, Any]:
    """PyTorch eager fp32, batch 1: the old service's way (same architecture; random weights unless the
    manifest names a weights file that is present next to it)."""
    import torch

    from photopipe.enhance.manifest import read_manifest
    from photopipe_export.arch import GfpganConfig, seeded_model

    manifest = read_manifest(model_dir)
    model = seeded_model(GfpganConfig(**manifest.config), 0).to(device)
    x = torch.from_numpy(_faces(1, size)).to(device)

    def run() -> None:
        with torch.no_grad():
            model(x)
        if device == "cuda":
            torch.cuda.synchronize()

    run()  # warm-up
    return {"torch": torch.__version__, "device": device, "batch": 1, **_rate(run, 1, iterations)}


def photo_stage_timings(session: GfpganSession) -> dict[str, Any]:
    """Per-stage ms for one photo through the pipeline (another module's; skipped when it is absent)."""
    try:
        from PIL import Image
        from skimage import data

        from photopipe.enhance.faces import MtcnnDetector
        from photopipe.enhance.pipeline import enhance
        from photopipe.enhance.upscale import LanczosUpscaler
        from photopipe.models import EnhanceParams
    except ImportError as e:
        return {"skipped": f"pipeline not available: {e}"}
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, format="JPEG", quality=95)
    started = time.perf_counter()
    result = enhance(buffer.getvalue(), EnhanceParams(), MtcnnDetector(), session, LanczosUpscaler())
    return {
        "photo": "skimage.data.astronaut (512x512 JPEG), default params",
        "faces": result.faces,
        "output": f"{result.width}x{result.height}",
        "timings_ms": result.timings,
        "total_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, help="an exported model (default: export a seeded one)")
    parser.add_argument("--batches", help="comma-separated batch sizes (default: 1,2,4,8 CPU; 1..64 CUDA)")
    parser.add_argument("--iterations", type=int, default=None, help="timed runs per batch size")
    parser.add_argument("--precision", choices=["auto", "fp32", "fp16"], default="auto")
    parser.add_argument("--no-baseline", action="store_true", help="skip the PyTorch eager baseline")
    parser.add_argument("--no-photo", action="store_true", help="skip the per-stage photo timings")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

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

        started = time.perf_counter()
        session = GfpganSession(model_dir, precision=args.precision, max_batch=64)
        session_s = round(time.perf_counter() - started, 1)
        on_gpu = session.provider != CPU
        if args.batches:
            batches = [int(b) for b in args.batches.split(",")]
        else:
            batches = [1, 2, 4, 8, 16, 32, 64] if on_gpu else [1, 2, 4, 8]
        iterations = args.iterations or (20 if on_gpu else 2)
        size = session.input_size

        restore: dict[str, Any] = {}
        for batch in batches:
            session.max_batch = batch
            faces = _faces(batch, size)
            session.restore(faces)  # warm-up at this shape
            restore[str(batch)] = _rate(lambda faces=faces: session.restore(faces), batch, iterations)

        baseline: dict[str, Any] | None = None
        if not args.no_baseline:
            baseline = baseline_torch_eager(model_dir, "cuda" if on_gpu else "cpu", iterations, size)
        best_batch, best = max(restore.items(), key=lambda item: item[1]["faces_per_s"])
        session.max_batch = max(8, int(best_batch))
        photo = {"skipped": "--no-photo"} if args.no_photo else photo_stage_timings(session)

        import onnxruntime as ort

        report = {
            "benchmark": "enhance.restore",
            "device": {
                "machine": platform.machine(),
                "processor": platform.processor() or platform.machine(),
                "gpu": on_gpu,
                "cpu_count": __import__("os").cpu_count(),
            },
            "onnxruntime": ort.__version__,
            "available_providers": ort.get_available_providers(),
            "providers": session.providers,
            "provider": session.provider,
            "precision": session.precision,
            "model_dir": str(args.model_dir)
            if args.model_dir
            else "exported to a temp dir (seeded, full size)",
            "export_s": export_s,
            "session_create_and_warmup_s": session_s,
            "restore_by_batch": restore,
            "best_batch": int(best_batch),
            "best_faces_per_s": best["faces_per_s"],
            "baseline_torch_eager_fp32_batch1": baseline,
            "speedup_vs_baseline": (
                round(best["faces_per_s"] / baseline["faces_per_s"], 2) if baseline else None
            ),
            "target": {
                "faces_per_s": TARGET_FACES_PER_S_H100,
                "device": "one H100 (restore stage)",
                "measured_here": (
                    "yes" if on_gpu and "H100" in _gpu_name() else "no: not measurable on this machine"
                ),
                "met": (best["faces_per_s"] >= TARGET_FACES_PER_S_H100) if on_gpu else None,
            },
            # Per-stage photo timings: photopipe.enhance.pipeline.enhance(...).timings
            "photo_stage_timings": photo,
        }
    print(json.dumps(report, indent=2))
    return 0


def _gpu_name() -> str:
    try:
        import torch

        return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else ""
    except ImportError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
