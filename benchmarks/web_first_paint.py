"""The web UI's first screen on a 1,000-photo library, in Chromium against the local stack; prints one JSON
object (logs go to stderr).

    .venv/bin/python benchmarks/web_first_paint.py [--photos 1000] [--runs 3]

Measured: the time from navigation to the first row of thumbnails painted (Element Timing: the render time
of the last of the first row's images), and the requests the first screen makes until the network is idle
(API calls, thumbnails, the UI's own files). The baseline in the same run, on the same library and origin, is
the naive gallery the old web app amounts to: read every page of the library following the cursor, then
render every thumbnail at once (eager <img>). The library is seeded straight into the tables and the bucket
(records as ingest leaves them, one real 256 px WebP per photo)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "photopipe")
logging.disable(logging.INFO)

from photopipe_local import LocalStack  # noqa: E402

CHROMIUM = os.environ.get("PHOTOPIPE_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
ARGS += ["--disable-sync", "--no-first-run", "--disable-quic"]
FIRST_ROW = 6  # thumbnails in the first row at 1280 px

BASELINE_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>baseline</title>
<style>ul{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px;list-style:none;padding:0}
img{width:100%;aspect-ratio:1;object-fit:cover}</style></head><body><ul id="grid"></ul><script>
(async () => {
  const token = JSON.parse(localStorage.getItem("photopipe.session")).token;
  const items = [];
  let cursor = null;
  do {
    const q = new URLSearchParams({ limit: "100" });
    if (cursor) q.set("cursor", cursor);
    const page = await (await fetch(`/api/v1/images?${q}`, { headers: { authorization: `Bearer ${token}` } })).json();
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  const grid = document.getElementById("grid");
  items.forEach((r, i) => {
    const li = document.createElement("li");
    const img = document.createElement("img");
    if (i < 6) img.setAttribute("elementtiming", "first-thumbnail-row");
    img.src = r.urls.thumbnail;
    img.alt = r.filename;
    li.append(img);
    grid.append(li);
  });
})();
</script></body></html>"""

FIRST_ROW_JS = """(n) => new Promise((resolve) => {
  const times = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.identifier === "first-thumbnail-row") times.push(e.renderTime || e.loadTime);
    if (times.length >= n) resolve(Math.max(...times.slice(0, n)));
  }).observe({ type: "element", buffered: true });
})"""


def seed(stack: LocalStack, user_id: str, n: int) -> None:
    session = boto3.session.Session(region_name=stack.region)
    table = session.resource("dynamodb", endpoint_url=stack.endpoint).Table(stack.name("ImagesTable"))
    s3 = session.client("s3", endpoint_url=stack.endpoint)
    bucket = stack.name("MediaBucket")
    start = datetime.now(UTC) - timedelta(days=30)
    thumb = io.BytesIO()
    Image.new("RGB", (256, 171), (120, 140, 160)).save(thumb, "WEBP", quality=70)
    with table.batch_writer() as batch:
        for i in range(n):
            image_id = f"bench{i:05d}"
            at = (start + timedelta(minutes=i)).isoformat(timespec="seconds").replace("+00:00", "Z")
            key = f"derived/{user_id}/{image_id}/thumb.webp"
            s3.put_object(Bucket=bucket, Key=key, Body=thumb.getvalue(), ContentType="image/webp")
            batch.put_item(
                Item={
                    "image_id": image_id,
                    "user_id": user_id,
                    "state": "classification_skipped",
                    "filename": f"IMG_{i:05d}.jpg",
                    "original_key": f"originals/{user_id}/{image_id}/IMG_{i:05d}.jpg",
                    "content_type": "image/jpeg",
                    "format": "jpeg",
                    "width": 4000,
                    "height": 3000,
                    "bytes": 2_500_000,
                    "thumbnail_key": key,
                    "preview_key": f"derived/{user_id}/{image_id}/preview.jpg",
                    "created_at": at,
                    "updated_at": at,
                }
            )


def measure(browser: Any, url: str, session: dict[str, Any], baseline: bool) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.add_init_script(f"localStorage.setItem('photopipe.session', {json.dumps(json.dumps(session))})")
    if baseline:
        page.route(
            "**/__baseline.html", lambda route: route.fulfill(body=BASELINE_PAGE, content_type="text/html")
        )
    seen: list[str] = []
    page.on("request", lambda r: seen.append(r.url))
    target = f"{url}/__baseline.html" if baseline else f"{url}/"
    page.goto(target)
    first_row_ms = page.evaluate(FIRST_ROW_JS, FIRST_ROW)
    page.wait_for_load_state("networkidle")
    context.close()
    return {
        "first_row_ms": round(first_row_ms, 1),
        "requests": len(seen),
        "api_requests": sum("/api/v1/" in u for u in seen),
        "thumbnail_requests": sum("thumb.webp" in u for u in seen),
    }


def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {"PHOTOPIPE_CLASSIFIER": "none"}
    # The functions run in-process and print their metrics (EMF) on stdout: keep stdout for the result.
    with contextlib.redirect_stdout(sys.stderr):
        report = run(args, env)
    print(json.dumps(report, indent=2))


def run(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    with LocalStack(
        ROOT / "template.yaml", port=0, stack_name="photopipe-bench-web", write_state=False, env_overrides=env
    ) as stack:
        url = stack.api_url
        answer = requests.post(
            f"{url}/api/v1/auth/register",
            json={"username": "bench", "email": "bench@example.com", "password": "bench-password"},
            timeout=30,
        ).json()
        started = time.monotonic()
        seed(stack, answer["user"]["user_id"], args.photos)
        seeded_s = time.monotonic() - started
        session = {"token": answer["token"], "expires_at": 4_102_444_800_000, "user": answer["user"]}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            measure(browser, url, session, baseline=False)  # warm: the functions' first (cold) calls
            ours, naive = [], []
            for _ in range(args.runs):
                ours.append(measure(browser, url, session, baseline=False))
                naive.append(measure(browser, url, session, baseline=True))
            browser.close()
    photopipe, baseline = median(ours), median(naive)
    return {
        "benchmark": "web_first_paint",
        "library_photos": args.photos,
        "runs": args.runs,
        "seed_seconds": round(seeded_s, 1),
        "photopipe_ui": photopipe,
        "baseline_all_pages_eager_thumbnails": baseline,
        "first_row_speedup": round(baseline["first_row_ms"] / max(photopipe["first_row_ms"], 0.1), 2),
        "requests_ratio": round(baseline["requests"] / max(photopipe["requests"], 1), 2),
        "machine": {"cpus": os.cpu_count()},
    }


if __name__ == "__main__":
    main()
