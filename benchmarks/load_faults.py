"""Load and faults on the local stack, at full length; prints one JSON object.

    .venv/bin/python benchmarks/load_faults.py [--photos 1000] [--uploaders 4] [--outage-s 30]

1. **Load**: `--photos` uploads through the API and presigned POSTs (every 25th is not an image), each
   classified by a fake DashScope on loopback (the real SDK talks to it); passes when every photo reaches a
   final state (`classified`, `rejected`, ...), none is lost and no dead-letter queue holds anything.
   Baseline in the same run: the ingest transform alone on a sample of the same files, in-process;
   `pipeline_efficiency` = pipeline photos/s / transform-only photos/s.
2. **Provider outage**: the model provider refuses connections for `--outage-s` seconds while photos
   arrive, then comes back; redeliveries come `--retry-delay-s` apart (AWS: the classify queue's 720 s
   visibility timeout). Passes when every photo ends `classified` by the model, none is in the DLQ and no
   failure was cached (one answered call per photo after the outage).

tests/e2e/test_faults.py runs the same scenarios (and the GPU-worker SIGKILL and the poison message) short
enough for `make test`; benchmarks/e2e_local.py is the plain throughput benchmark."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "layers" / "photopipe"))
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "photopipe")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "photopipe-bench")  # read when the layer is imported

import numpy as np  # noqa: E402
import requests  # noqa: E402
from aws_lambda_powertools.utilities import parameters  # noqa: E402
from PIL import Image  # noqa: E402

from photopipe import wiring  # noqa: E402
from photopipe.errors import ImageRejected  # noqa: E402
from photopipe.imaging import Limits, read_original, transform  # noqa: E402
from photopipe_local import LocalStack  # noqa: E402
from tests.fakes.dashscope_server import FakeDashScope  # noqa: E402

KEY = "sk-bench-0123456789"
ANSWER = '{"category": "other", "confidence": 0.6, "reason": "a benchmark photo"}'
FINAL = {"classified", "classification_skipped", "rejected", "failed"}
DLQS = ("IngestDeadLetterQueue", "ClassifyDeadLetterQueue")
# Metrics stay on: with POWERTOOLS_METRICS_DISABLED, Powertools 3.37 never clears them and its 100th value
# of one metric raises (a 500 on the 100th upload). Their EMF lines go to stderr with the logs.
QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING"}
# The load is one user's: its quotas are raised for the run (defaults: 1000 uploads a day, 10 GiB).
NO_QUOTA = {"PHOTOPIPE_QUOTA_UPLOADS_PER_DAY": "1000000", "PHOTOPIPE_QUOTA_STORED_BYTES": str(1 << 40)}


def make_photos(n: int, bad_every: int = 25, seed: int = 11) -> list[tuple[str, bytes, str]]:
    """Small real-content JPEGs (scikit-image's photos, noise added so no two files are equal)."""
    from skimage import data

    rng = np.random.default_rng(seed)
    sources = [
        Image.fromarray(s()).convert("RGB").resize((480, 360))
        for s in (data.astronaut, data.chelsea, data.coffee, data.rocket)
    ]
    photos = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            photos.append((f"not-a-photo-{i}.jpg", b"%PDF-1.7\n" + rng.bytes(4_000), "image/jpeg"))
            continue
        base = np.asarray(sources[i % len(sources)]).astype(np.int16)
        noisy = (base + rng.normal(0, 3, base.shape)).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, "JPEG", quality=85)
        photos.append((f"photo-{i}.jpg", buf.getvalue(), "image/jpeg"))
    return photos


def transform_only(photos: list[tuple[str, bytes, str]]) -> float:
    started = time.perf_counter()
    for _, data, _ in photos:
        with contextlib.suppress(ImageRejected):
            transform(read_original(io.BytesIO(data), Limits()))
    return len(photos) / (time.perf_counter() - started)


@contextlib.contextmanager
def stack_with_model(
    fake: FakeDashScope, name: str, retry_delay_s: int | None = None
) -> Iterator[LocalStack]:
    wiring.reset()
    env = {"DASHSCOPE_API_KEY": KEY, "DASHSCOPE_HTTP_BASE_URL": fake.base_url, **QUIET, **NO_QUOTA}
    with LocalStack(
        ROOT / "template.yaml",
        port=0,
        stack_name=name,
        write_state=False,
        env_overrides=env,
        retry_delay_seconds=retry_delay_s,
    ) as stack:
        yield stack
    wiring.reset()
    parameters.clear_caches()


class Client:
    def __init__(self, api: str, username: str) -> None:
        self.api = api
        resp = requests.post(
            f"{api}/api/v1/auth/register",
            json={"username": username, "email": f"{username}@example.com", "password": "benchmark-password"},
            timeout=30,
        )
        resp.raise_for_status()
        self.headers = {"authorization": f"Bearer {resp.json()['token']}"}

    def upload(self, photo: tuple[str, bytes, str]) -> str:
        name, data, content_type = photo
        resp = requests.post(
            f"{self.api}/api/v1/uploads",
            headers=self.headers,
            json={"filename": name, "content_type": content_type, "size": len(data)},
            timeout=60,
        )
        resp.raise_for_status()
        body = resp.json()
        post = requests.post(
            body["upload"]["url"], data=body["upload"]["fields"], files={"file": (name, data)}, timeout=60
        )
        post.raise_for_status()
        return str(body["image_id"])

    def states(self) -> dict[str, dict[str, Any]]:
        """Every image of the user, by id (pages of 100, following the cursor)."""
        seen: dict[str, dict[str, Any]] = {}
        cursor = None
        while True:
            params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
            page = requests.get(
                f"{self.api}/api/v1/images", headers=self.headers, params=params, timeout=60
            ).json()
            seen.update({i["image_id"]: i for i in page["items"]})
            cursor = page.get("next_cursor")
            if not cursor:
                return seen

    def wait_final(self, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            images = self.states()
            done = {i: images[i] for i in ids if i in images and _final(images[i])}
            if len(done) == len(ids) or time.monotonic() > deadline:
                return done
            time.sleep(0.5)


def _final(image: dict[str, Any]) -> bool:
    """Done with: a final state, or a classification failure that will not be retried."""
    if image["state"] == "classification_failed":
        return "will be retried" not in (image.get("reason_message") or "")
    return image["state"] in FINAL


def dead_letters(stack: LocalStack) -> dict[str, int]:
    assert stack.clients is not None
    counts = {}
    for logical_id in DLQS:
        attributes = stack.clients.sqs.get_queue_attributes(
            QueueUrl=stack.ref(logical_id),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        counts[logical_id] = int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )
    return counts


def states_of(images: dict[str, dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for image in images.values():
        counts[image["state"]] = counts.get(image["state"], 0) + 1
    return counts


def load(fake: FakeDashScope, photos: list[tuple[str, bytes, str]], uploaders: int) -> dict[str, Any]:
    with stack_with_model(fake, "photopipe-bench-load") as stack:
        client = Client(stack.api_url, "load")
        started = time.perf_counter()
        with ThreadPoolExecutor(uploaders) as pool:
            ids = list(pool.map(client.upload, photos))
        uploaded_s = time.perf_counter() - started
        done = client.wait_final(ids, timeout=max(600.0, len(ids) * 2.0))
        elapsed = time.perf_counter() - started
        stack.wait_idle(120)
        dlq = dead_letters(stack)
    states = states_of(done)
    bad = sum(1 for name, _, _ in photos if name.startswith("not-a-photo"))
    return {
        "photos": len(ids),
        "not_images": bad,
        "uploaded_in_s": round(uploaded_s, 2),
        "uploads_per_s": round(len(ids) / uploaded_s, 2),
        "all_final_in_s": round(elapsed, 2),
        "photos_per_s": round(len(done) / elapsed, 2),
        "states": states,
        "lost": len(ids) - len(done),
        "dead_letters": dlq,
        "pass": len(done) == len(ids)
        and states.get("rejected", 0) == bad
        and states.get("classified", 0) == len(ids) - bad
        and not any(dlq.values()),
    }


def outage(
    fake: FakeDashScope, photos: list[tuple[str, bytes, str]], outage_s: float, retry_delay_s: int
) -> dict[str, Any]:
    with stack_with_model(fake, "photopipe-bench-outage", retry_delay_s=retry_delay_s) as stack:
        client = Client(stack.api_url, "outage")
        fake.stop()
        down_at = time.perf_counter()
        ids = [client.upload(photo) for photo in photos]
        failed_while_down = 0  # the most photos seen waiting for a redelivery at once
        while time.perf_counter() - down_at < outage_s:
            waiting = sum(1 for i in client.states().values() if i["state"] == "classification_failed")
            failed_while_down = max(failed_while_down, waiting)
            time.sleep(1.0)
        fake.start()
        back_at = time.perf_counter()
        calls_when_back = len(fake.llm_requests)
        done = client.wait_final(ids, timeout=10 * retry_delay_s + 120)
        recovered_s = time.perf_counter() - back_at
        stack.wait_idle(120)
        dlq = dead_letters(stack)
        answered_after = len([r for r in fake.llm_requests[calls_when_back:] if r.status == 200])
        sources: dict[str, int] = {}
        for image in done.values():
            source = (image.get("classification") or {}).get("source", "none")
            sources[source] = sources.get(source, 0) + 1
    states = states_of(done)
    return {
        "outage_s": outage_s,
        "retry_delay_s": retry_delay_s,
        "photos": len(ids),
        "failed_while_down": failed_while_down,
        "all_classified_in_s_after_back": round(recovered_s, 2),
        "states": states,
        "classified_by": sources,
        "answered_calls_after_back": answered_after,
        "dead_letters": dlq,
        # no failure cached: every photo ended classified, by the model or from a category the model gave
        # after the outage (a near duplicate of a photo answered then); one answered call per model source
        "pass": states.get("classified", 0) == len(ids)
        and answered_after == sources.get("llm", -1)
        and not any(dlq.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument(
        "--retry-delay-s", type=int, default=20, help="local redelivery delay in the outage run"
    )
    parser.add_argument("--outage-photos", type=int, default=20)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-outage", action="store_true")
    args = parser.parse_args()

    result: dict[str, Any] = {
        "benchmark": "load_faults",
        "environment": {"python": platform.python_version(), "cpus": os.cpu_count()},
    }
    with stdout_to_stderr(), FakeDashScope(api_key=KEY) as fake:
        fake.responder = lambda _image: ANSWER
        if not args.skip_load:
            photos = make_photos(args.photos)
            sample = photos[: min(50, len(photos))]
            baseline = transform_only(sample)
            result["load"] = load(fake, photos, args.uploaders)
            result["baseline_transform_only_photos_per_s"] = round(baseline, 2)
            result["pipeline_efficiency"] = round(result["load"]["photos_per_s"] / baseline, 3)
        if not args.skip_outage:
            fake.reset()
            outage_photos = make_photos(args.outage_photos, bad_every=0, seed=23)
            result["outage"] = outage(fake, outage_photos, args.outage_s, args.retry_delay_s)
    result["pass"] = all(part["pass"] for key, part in result.items() if key in ("load", "outage"))
    print(json.dumps(result, indent=2))


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """While the stacks run, whatever writes to file descriptor 1 (the functions' JSON logs, held by
    Powertools' handler since import) goes to stderr: stdout carries the result only."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


if __name__ == "__main__":
    main()
