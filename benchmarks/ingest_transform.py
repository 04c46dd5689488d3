"""Benchmark the ingest transform on 12 MP and 24 MP JPEGs against a naive Pillow pipeline and pyvips.

    .venv/bin/python benchmarks/ingest_transform.py [--repeat N]

Prints one JSON object. "ours" is what ingest runs: `read_original` (stream → spool + sha256) followed by
`transform`. The baseline is the obvious Pillow code: open → `ImageOps.exif_transpose` (full decode) →
RGB → LANCZOS to the 1440 preview, the 256 thumbnail from the preview → JPEG q85 + WebP → sha256.
Peak memory is measured in fresh subprocesses (see `peak_memory.method` in the output)."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, features

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "photopipe"))

from photopipe.imaging import Limits, read_original, transform  # noqa: E402

TARGETS = {"speedup_min": 5, "peak_mb_max": 300}
CASES = {  # name: (stored width, stored height, EXIF orientation)
    "12mp": (4000, 3000, 1),
    "24mp": (6000, 4000, 1),
    "24mp_orientation6": (6000, 4000, 6),
}
LIMITS = Limits()


def photo_jpeg(width: int, height: int, orientation: int, noise: float = 8.0, seed: int = 0) -> bytes:
    """A camera-like JPEG: the astronaut upscaled to width x height with sensor-like noise, q=90."""
    from skimage import data  # here, so the memory probes do not import it

    base = Image.fromarray(data.astronaut()).resize((width, height), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    pixels = np.asarray(base, dtype=np.int16)
    pixels += rng.normal(0, noise, size=pixels.shape).astype(np.int16)
    noisy = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    del pixels
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "photopipe-bench"  # Make
    buf = io.BytesIO()
    noisy.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def ours(payload: bytes) -> tuple[int, int]:
    with read_original(io.BytesIO(payload), LIMITS) as original:
        result = transform(original, LIMITS)
    return result.preview.width, result.preview.height


def naive_pillow(payload: bytes) -> tuple[int, int]:
    hashlib.sha256(payload).hexdigest()
    with Image.open(io.BytesIO(payload)) as im:
        upright = ImageOps.exif_transpose(im).convert("RGB")
    preview = upright.copy()
    preview.thumbnail((LIMITS.preview_side, LIMITS.preview_side), Image.Resampling.LANCZOS, reducing_gap=None)
    thumb = preview.copy()
    thumb.thumbnail((LIMITS.thumb_side, LIMITS.thumb_side), Image.Resampling.LANCZOS, reducing_gap=None)
    preview.save(io.BytesIO(), "JPEG", quality=85)
    thumb.save(io.BytesIO(), "WEBP", quality=80)
    return preview.size


def pyvips_thumbnail(payload: bytes) -> tuple[int, int]:
    import pyvips

    hashlib.sha256(payload).hexdigest()
    preview = pyvips.Image.thumbnail_buffer(payload, LIMITS.preview_side, size="down")  # autorotates
    preview = preview.copy_memory()
    preview.jpegsave_buffer(Q=85)
    preview.thumbnail_image(LIMITS.thumb_side).webpsave_buffer(Q=80)
    return preview.width, preview.height


def median_ms(
    fn: Callable[[bytes], tuple[int, int]], payload: bytes, repeat: int
) -> tuple[float, tuple[int, int]]:
    size = fn(payload)  # warm-up (imports, ICC/plugin init, page faults)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(payload)
        times.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(times), 1), size


def pyvips_status() -> tuple[dict[str, Any] | None, str | None]:
    try:
        import pyvips
    except (ImportError, OSError) as e:  # OSError: the binding is there but libvips.so is not
        return None, f"{type(e).__name__}: {e}"
    pyvips.cache_set_max(0)  # no operation cache: every run decodes again
    return {
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "threads": pyvips.concurrency_get(),
    }, None


def peak_memory_mb(mode: str, path: Path) -> dict[str, float]:
    """Run one pipeline on `path` in a fresh interpreter and report how far its RSS rose.

    ru_maxrss is not usable here: Linux carries the parent's peak over fork+exec, so a child of this
    (large) benchmark process starts with the parent's high-water mark. The child instead resets its own
    high-water mark (/proc/self/clear_refs) after imports and reads VmHWM after the run."""
    code = f"""
import json, sys
sys.path.insert(0, {str(ROOT / "layers" / "photopipe")!r})
sys.path.insert(0, {str(ROOT / "benchmarks")!r})
import ingest_transform as bench

def status_mb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)

path = {str(path)!r}
before = status_mb("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset VmHWM to the current RSS
if {mode!r} == "ours":
    with open(path, "rb") as stream, bench.read_original(stream, bench.LIMITS) as original:
        bench.transform(original, bench.LIMITS)
else:
    with open(path, "rb") as stream:
        bench.naive_pillow(stream.read())
print(json.dumps({{"before_mb": before, "peak_mb": status_mb("VmHWM")}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    probe = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "rss_after_imports_mb": round(probe["before_mb"], 1),
        "process_peak_mb": round(probe["peak_mb"], 1),
        "growth_mb": round(probe["peak_mb"] - probe["before_mb"], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per pipeline and case (median)")
    parser.add_argument(
        "--noise",
        type=float,
        default=8.0,
        help="std-dev of the noise added to the upscaled photo; 8 gives camera-like JPEG sizes "
        "(~2 bits/pixel at q=90), smaller values give smaller files that decode faster",
    )
    args = parser.parse_args()

    vips, vips_reason = pyvips_status()
    cases: dict[str, Any] = {}
    payloads: dict[str, bytes] = {}
    for name, (width, height, orientation) in CASES.items():
        payload = payloads[name] = photo_jpeg(width, height, orientation, noise=args.noise)
        ours_ms, ours_size = median_ms(ours, payload, args.repeat)
        base_ms, base_size = median_ms(naive_pillow, payload, args.repeat)
        case: dict[str, Any] = {
            "stored_size": [width, height],
            "exif_orientation": orientation,
            "jpeg_mb": round(len(payload) / 2**20, 2),
            "preview_size": list(ours_size),
            "ours_ms": ours_ms,
            "baseline_ms": base_ms,
            "speedup": round(base_ms / ours_ms, 2),
        }
        assert ours_size == base_size, (ours_size, base_size)
        if vips is not None:
            vips_ms, vips_size = median_ms(pyvips_thumbnail, payload, args.repeat)
            case |= {"pyvips_ms": vips_ms, "ours_vs_pyvips": round(ours_ms / vips_ms, 2)}
            case["pyvips_preview_size"] = list(vips_size)
        cases[name] = case

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "24mp.jpg"
        path.write_bytes(payloads["24mp"])
        ours_mem = peak_memory_mb("ours", path)
        base_mem = peak_memory_mb("baseline", path)

    speedups = [c["speedup"] for c in cases.values()]
    report = {
        "benchmark": "ingest_transform",
        "repeat": args.repeat,
        "photo": f"skimage astronaut upscaled with bicubic + gaussian noise sigma={args.noise}, JPEG q=90",
        "environment": {
            "python": platform.python_version(),
            "pillow": Image.__version__,
            "libjpeg_turbo": features.version("libjpeg_turbo"),
            "cpus": os.cpu_count(),
        },
        "ours": "read_original (spool + sha256) + transform: JPEG draft to >= 1440, BILINEAR for the "
        "remaining <= 2x (LANCZOS beyond), transpose last, thumb from the preview, WebP method 2",
        "baseline": "sha256 + Image.open → exif_transpose (full decode) → RGB → LANCZOS to 1440 → "
        "LANCZOS 256 from that → JPEG q85 + WebP",
        "cases": cases,
        "pyvips": vips,
        **({"pyvips_unavailable": vips_reason} if vips is None else {}),
        "peak_memory": {
            "method": "fresh subprocess per pipeline on the 24 MP JPEG streamed from a file: peak RSS "
            "(VmHWM, reset via /proc/self/clear_refs after imports) minus RSS after imports; "
            "ru_maxrss would report the parent's peak, inherited across fork+exec",
            "ours_mb": ours_mem["growth_mb"],
            "baseline_mb": base_mem["growth_mb"],
            "ours": ours_mem,
            "baseline": base_mem,
        },
        "targets": TARGETS,
        "pass": {
            "speedup_min": min(speedups) >= TARGETS["speedup_min"],
            "peak_mb_max": ours_mem["growth_mb"] <= TARGETS["peak_mb_max"],
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
