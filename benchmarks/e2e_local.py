"""End to end on the local stack: N photos through presigned POST until every one is `processed` or
`rejected`; prints one JSON object.

    .venv/bin/python benchmarks/e2e_local.py [--photos 40] [--bad-every 10] [--uploaders 4]

The baseline in the same run is the imaging work alone (`read_original` + `transform` on the same files,
in-process, no AWS): `pipeline_efficiency` = end-to-end photos/s / transform-only photos/s says how much
the emulated S3 → SQS → Lambda → DynamoDB plumbing costs on top of the pixels."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "photopipe"))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "photopipe")

from photopipe.errors import ImageRejected  # noqa: E402
from photopipe.imaging import Limits, read_original, transform  # noqa: E402
from photopipe_local import LocalStack  # noqa: E402

TERMINAL = {"processed", "rejected", "failed"}


def make_photos(n: int, bad_every: int) -> list[tuple[str, bytes, str]]:
    """Real-photo content (scikit-image's bundled photos) at phone-ish sizes; every `bad_every`-th is not
    an image at all (it must come back `rejected`, not lost)."""
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(7)
    sizes = [(2000, 1500), (1600, 1200), (3000, 2000), (1200, 1600)]
    photos = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            photos.append((f"not-a-photo-{i}.jpg", b"%PDF-1.7\n" + rng.bytes(20_000), "image/jpeg"))
            continue
        size = sizes[i % len(sizes)]
        base = Image.fromarray(sources[i % len(sources)]).resize(size, Image.Resampling.BICUBIC)
        noise = rng.normal(0, 4, (base.height, base.width, 3)).astype(np.int16)
        noisy = np.asarray(base).astype(np.int16) + noise
        buf = io.BytesIO()
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        photos.append((f"photo-{i}.jpg", buf.getvalue(), "image/jpeg"))
    return photos


def transform_only(photos: list[tuple[str, bytes, str]]) -> float:
    started = time.perf_counter()
    for _, data, _ in photos:
        with contextlib.suppress(ImageRejected):  # the bad ones are rejected, as in the pipeline
            transform(read_original(io.BytesIO(data), Limits()))
    return len(photos) / (time.perf_counter() - started)


def run_pipeline(stack: LocalStack, photos: list[tuple[str, bytes, str]], uploaders: int) -> dict[str, Any]:
    api = stack.api_url
    reg = requests.post(
        f"{api}/api/v1/auth/register",
        json={"username": "bench", "email": "bench@example.com", "password": "benchmark-password"},
        timeout=30,
    )
    reg.raise_for_status()
    headers = {"authorization": f"Bearer {reg.json()['token']}"}

    def upload(photo: tuple[str, bytes, str]) -> str:
        name, data, content_type = photo
        resp = requests.post(
            f"{api}/api/v1/uploads",
            headers=headers,
            json={"filename": name, "content_type": content_type, "size": len(data)},
            timeout=30,
        )
        resp.raise_for_status()
        body = resp.json()
        post = requests.post(
            body["upload"]["url"], data=body["upload"]["fields"], files={"file": (name, data)}, timeout=60
        )
        post.raise_for_status()
        return str(body["image_id"])

    started = time.perf_counter()
    with ThreadPoolExecutor(uploaders) as pool:
        ids = list(pool.map(upload, photos))
    uploaded_s = time.perf_counter() - started

    states: dict[str, str] = {}
    deadline = time.monotonic() + 600
    while len(states) < len(ids) and time.monotonic() < deadline:
        cursor = None
        seen: dict[str, str] = {}
        while True:
            params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
            page = requests.get(f"{api}/api/v1/images", headers=headers, params=params, timeout=30).json()
            seen.update({i["image_id"]: i["state"] for i in page["items"]})
            cursor = page.get("next_cursor")
            if not cursor:
                break
        states = {i: s for i, s in seen.items() if s in TERMINAL}
        if len(states) < len(ids):
            time.sleep(0.25)
    elapsed = time.perf_counter() - started
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state] = counts.get(state, 0) + 1
    return {
        "photos": len(ids),
        "uploaded_in_s": round(uploaded_s, 2),
        "all_terminal_in_s": round(elapsed, 2),
        "photos_per_s": round(len(states) / elapsed, 2),
        "states": counts,
        "lost": len(ids) - len(states),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=40)
    parser.add_argument("--bad-every", type=int, default=10, help="every Nth upload is no image (0: none)")
    parser.add_argument("--uploaders", type=int, default=4, help="concurrent uploading clients")
    args = parser.parse_args()

    photos = make_photos(args.photos, args.bad_every)
    baseline = transform_only(photos)
    quiet = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}  # stdout: JSON only
    with LocalStack(
        ROOT / "template.yaml", port=0, stack_name="photopipe-bench", write_state=False, env_overrides=quiet
    ) as stack:
        result = run_pipeline(stack, photos, args.uploaders)
    expected_bad = sum(1 for name, _, _ in photos if name.startswith("not-a-photo"))
    print(
        json.dumps(
            {
                "benchmark": "e2e_local",
                "environment": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "workload": {
                    "photos": args.photos,
                    "not_images": expected_bad,
                    "uploaders": args.uploaders,
                    "megabytes": round(sum(len(d) for _, d, _ in photos) / 1e6, 1),
                },
                "pipeline": result,
                "baseline_transform_only_photos_per_s": round(baseline, 2),
                "pipeline_efficiency": round(result["photos_per_s"] / baseline, 2),
                "pass": {
                    "none_lost": result["lost"] == 0,
                    "rejected_as_expected": result["states"].get("rejected", 0) == expected_bad,
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
