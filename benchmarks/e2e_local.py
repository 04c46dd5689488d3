"""End to end on the local stack: N photos through presigned POST until every one rests in a terminal state;
prints one JSON object on stdout (everything else, the handlers' logs included, goes to stderr).

    .venv/bin/python benchmarks/e2e_local.py [--photos 100 1000] [--uploaders 8] [--bad-every 10]

Each `--photos` size runs on a fresh local stack. Terminal means every state a photo can rest in after
ingest: `classified`, `classification_skipped` (no model configured locally), `classification_failed`,
`rejected`, `failed`; a photo in any other state once the pipeline is idle (or at the deadline) is lost.

The baseline, measured in the same run just before and just after each pipeline run, is the imaging work
alone (`read_original` + `transform` on the same kind of files, in this process, no AWS):
`pipeline_efficiency` = end-to-end photos/s / transform-only photos/s says how much the emulated
S3 -> SQS -> Lambda -> DynamoDB plumbing costs on top of the pixels. With several sizes, `scaling` is
photos/s at the largest over photos/s at the smallest (1.0: throughput does not fall with library size).

Waiting is cheap: two `GetQueueAttributes` calls every half second until the ingest and classify queues are
empty and idle; the images are listed once, at the end. Per-stage figures come from the local stack's own
log records (each SQS batch and HTTP request), read by a logging handler in this process."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import statistics
import struct
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "photopipe"))
QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
os.environ.update(QUIET)

from photopipe.errors import ImageRejected  # noqa: E402
from photopipe.imaging import Limits, read_original, transform  # noqa: E402
from photopipe.models import ImageState  # noqa: E402
from photopipe_local import LocalStack  # noqa: E402
from photopipe_local.runtime import concurrency_from_environment, machine_concurrency  # noqa: E402

TERMINAL = frozenset(
    {
        ImageState.CLASSIFIED,
        ImageState.CLASSIFICATION_SKIPPED,
        ImageState.CLASSIFICATION_FAILED,
        ImageState.REJECTED,
        ImageState.FAILED,
    }
)
GOALS = {"pipeline_efficiency_min": 0.3, "scaling_min": 0.8}
PIPELINE_FUNCTIONS = ("IngestFunction", "ClassifyFunction")
BASELINE_SAMPLE = 100  # photos timed for the transform-only baseline (same mix as the run)


# ---------------------------------------------------------------------------------------------- photos


@dataclass(frozen=True)
class Photos:
    """N distinct uploads built from a small pool of noisy camera-like JPEGs: photo i is a pool image with a
    JPEG comment segment naming i (same pixels, so the same decoding work, but its own bytes and sha256).
    Every `bad_every`-th is not an image at all (it must come back `rejected`, not lost)."""

    count: int
    bad_every: int
    pool: tuple[bytes, ...]

    @classmethod
    def build(cls, count: int, bad_every: int, pool_size: int = 16) -> Photos:
        from skimage import data

        sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
        sizes = [(2000, 1500), (1600, 1200), (3000, 2000), (1200, 1600)]
        rng, pool = np.random.default_rng(7), []
        for i in range(pool_size):
            base = Image.fromarray(sources[i % 4]).resize(sizes[i % 4], Image.Resampling.BICUBIC)
            noisy = np.asarray(base).astype(np.int16) + rng.normal(0, 4, (base.height, base.width, 3))
            buf = io.BytesIO()
            Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
            pool.append(buf.getvalue())
        return cls(count, bad_every, tuple(pool))

    def is_bad(self, i: int) -> bool:
        return bool(self.bad_every) and i % self.bad_every == self.bad_every - 1

    def get(self, i: int) -> tuple[str, bytes]:
        if self.is_bad(i):
            return f"not-a-photo-{i}.jpg", b"%PDF-1.7\n" + np.random.default_rng(i).bytes(20_000)
        jpeg, comment = self.pool[i % len(self.pool)], f"photopipe benchmark photo {i}".encode()
        segment = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment  # COM, right after SOI
        return f"photo-{i}.jpg", jpeg[:2] + segment + jpeg[2:]

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return (self.get(i) for i in range(self.count))

    @property
    def bad(self) -> int:
        return sum(map(self.is_bad, range(self.count)))

    @property
    def megabytes(self) -> float:
        return round(sum(len(data) for _, data in self) / 1e6, 1)


def transform_only(photos: Photos, sample: int = BASELINE_SAMPLE) -> tuple[float, float]:
    """Photos/s and CPU seconds per photo of the imaging work alone, one thread, on the run's first `sample`
    photos."""
    chosen = [photos.get(i) for i in range(min(sample, photos.count))]
    started, cpu = time.perf_counter(), time.process_time()
    for _, data in chosen:
        with contextlib.suppress(ImageRejected):  # the bad ones are rejected, as in the pipeline
            transform(read_original(io.BytesIO(data), Limits()))
    return len(chosen) / (time.perf_counter() - started), (time.process_time() - cpu) / len(chosen)


def cpu_seconds(pid: int | None = None) -> float | None:
    """User + system CPU time a process (this one by default) has used so far, all its threads: a figure
    that other work on the machine does not inflate as it does wall time."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    with contextlib.suppress(OSError, ValueError, IndexError):  # Linux's /proc only
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


# ---------------------------------------------------------------------------------------------- stages


def summary(values: Sequence[float], digits: int = 3) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    figures = {"p50": pick(0.5), "p95": pick(0.95), "max": ordered[-1], "mean": statistics.fmean(ordered)}
    return {k: round(v, digits) for k, v in figures.items()}


class StageLog(logging.Handler):
    """Collects the local stack's per-batch and per-request log records (their `extra` fields)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.batches: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:  # called under the handler's lock
        fields = record.__dict__
        if record.getMessage() == "sqs batch processed":
            self.batches.append({k: fields.get(k) for k in ("function", "batch_size", "failures")})
            self.batches[-1] |= {k: fields.get(k) for k in ("duration_ms", "oldest_message_age_ms")}
        elif record.getMessage() == "http request":
            self.requests.append({k: fields.get(k) for k in ("method", "path", "duration_ms")})

    @contextlib.contextmanager
    def attached(self) -> Iterator[StageLog]:
        loggers = [logging.getLogger("photopipe_local.runtime"), logging.getLogger("photopipe_local.http")]
        levels = [lg.level for lg in loggers]
        for lg in loggers:
            lg.addHandler(self)
            lg.setLevel(logging.INFO)
        try:
            yield self
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.removeHandler(self)
                lg.setLevel(level)

    def records(self, function: str) -> int:
        """Records the function has handled without failing, so far."""
        with self.lock or contextlib.nullcontext():
            return sum(b["batch_size"] - b["failures"] for b in self.batches if b["function"] == function)

    def functions(self, wall_s: float) -> dict[str, Any]:
        """Per function: invocations, records, busy time (sum of invocation durations; / wall time it says
        how many environments were busy on average), time per record, and how long the oldest message of
        each batch had waited in its queue when the batch was handed to the function."""
        out: dict[str, Any] = {}
        for name in sorted({b["function"] for b in self.batches}):
            mine = [b for b in self.batches if b["function"] == name]
            records, busy = sum(b["batch_size"] for b in mine), sum(b["duration_ms"] for b in mine) / 1000
            ages = [b["oldest_message_age_ms"] / 1000 for b in mine if b["oldest_message_age_ms"] is not None]
            out[name] = {
                "invocations": len(mine),
                "records": records,
                "failed_records": sum(b["failures"] for b in mine),
                "mean_batch_size": round(records / len(mine), 2),
                "busy_s": round(busy, 2),
                "mean_busy_environments": round(busy / wall_s, 2) if wall_s else None,
                "ms_per_record": round(1000 * busy / records, 1) if records else None,
                "oldest_message_age_s": summary(ages, 2),
            }
        return out

    def http(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for r in self.requests:
            route = (
                f"{r['method']} {'/api/v1/images' if r['path'].startswith('/api/v1/images') else r['path']}"
            )
            out.setdefault(route, []).append(r["duration_ms"] / 1000)
        return {route: {"requests": len(d), "latency_s": summary(d)} for route, d in sorted(out.items())}


# ---------------------------------------------------------------------------------------------- pipeline


def timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def wait_until_idle(stack: LocalStack, stages: StageLog, photos: int, deadline: float) -> bool:
    """True once the ingest and classify queues hold nothing (visible, in flight or delayed) and no batch is
    being processed, twice in a row; False at the deadline. Counting a queue's messages costs moto a pass over
    them, so the queues are only asked once ingest has handled as many records as there are photos."""
    sources = [s for s in stack.event_sources if s.function.spec.logical_id in PIPELINE_FUNCTIONS]
    while stages.records("IngestFunction") < photos and time.monotonic() < deadline:
        time.sleep(0.5)
    quiet = 0
    while time.monotonic() < deadline:
        busy = any(s.busy.is_set() or s.backlog() for s in sources)
        if (quiet := 0 if busy else quiet + 1) >= 2:
            return True
        time.sleep(0.5)
    return False


def list_images(api: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    items, cursor = [], None
    while True:
        params = {"limit": "100"} | ({"cursor": cursor} if cursor else {})
        page = requests.get(f"{api}/api/v1/images", headers=headers, params=params, timeout=60)
        page.raise_for_status()
        items += page.json()["items"]
        if not (cursor := page.json().get("next_cursor")):
            return items


def cpu_per_photo(
    before: tuple[float | None, float | None], after: tuple[float | None, float | None], photos: int
) -> dict[str, float | None]:
    """CPU seconds per photo while the pipeline ran: this process (the stack's functions, gateway and
    pollers, and the uploading clients) and moto's (when it runs in a child process)."""
    used = [
        None if b is None or a is None else round((a - b) / photos, 4)
        for b, a in zip(before, after, strict=True)
    ]
    total = round(sum(u for u in used if u is not None), 4)
    return {"stack_and_clients": used[0], "moto_process": used[1], "total": total}


def run_pipeline(stack: LocalStack, photos: Photos, uploaders: int, timeout_s: float) -> dict[str, Any]:
    api = stack.api_url
    reg = requests.post(
        f"{api}/api/v1/auth/register",
        json={"username": "bench", "email": "bench@example.com", "password": "benchmark-password"},
        timeout=30,
    )
    reg.raise_for_status()
    headers = {"authorization": f"Bearer {reg.json()['token']}"}
    api_latency: list[float] = []
    s3_latency: list[float] = []
    local = threading.local()

    def upload(i: int) -> str:
        if not hasattr(local, "http"):
            local.http = requests.Session()  # one keep-alive connection per uploader, as a client would
        name, data = photos.get(i)
        t0 = time.perf_counter()
        resp = local.http.post(
            f"{api}/api/v1/uploads",
            headers=headers,
            json={"filename": name, "content_type": "image/jpeg", "size": len(data)},
            timeout=60,
        )
        resp.raise_for_status()
        t1 = time.perf_counter()
        body = resp.json()
        post = local.http.post(
            body["upload"]["url"], data=body["upload"]["fields"], files={"file": (name, data)}, timeout=120
        )
        post.raise_for_status()
        api_latency.append(t1 - t0)
        s3_latency.append(time.perf_counter() - t1)
        return str(body["image_id"])

    stages = StageLog()
    with stages.attached():
        started_wall, started = time.time(), time.perf_counter()
        cpu_before = cpu_seconds(), cpu_seconds(stack.moto.pid) if stack.moto.pid else None
        with ThreadPoolExecutor(uploaders) as pool:
            ids = set(pool.map(upload, range(photos.count)))
        uploaded_s = time.perf_counter() - started
        idle = wait_until_idle(stack, stages, photos.count, time.monotonic() + timeout_s)
        idle_seen_s = time.perf_counter() - started
        cpu_after = cpu_seconds(), cpu_seconds(stack.moto.pid) if stack.moto.pid else None
    images = {i["image_id"]: i for i in list_images(api, headers) if i["image_id"] in ids}
    done = {i: image for i, image in images.items() if image["state"] in TERMINAL}
    # The last photo's arrival in a terminal state, from its own record (not when the poll noticed it).
    ends = [timestamp(image["updated_at"]) - started_wall for image in done.values()]
    elapsed = max(ends, default=idle_seen_s)
    latencies = [timestamp(i["updated_at"]) - timestamp(i["created_at"]) for i in done.values()]
    counts: dict[str, int] = {}
    for image in images.values():
        counts[image["state"]] = counts.get(image["state"], 0) + 1
    return {
        "photos": len(ids),
        "photos_per_s": round(len(done) / elapsed, 2),
        "all_terminal_in_s": round(elapsed, 2),
        "lost": len(ids) - len(done),
        "states": dict(sorted(counts.items())),
        "idle_before_deadline": idle,
        "cpu_s_per_photo": cpu_per_photo(cpu_before, cpu_after, len(ids)),
        "stages": {
            "upload": {
                "s": round(uploaded_s, 2),
                "photos_per_s": round(photos.count / uploaded_s, 2),
                "post_uploads_latency_s": summary(api_latency),
                "s3_post_latency_s": summary(s3_latency),
            },
            "drain_after_last_upload_s": round(elapsed - uploaded_s, 2),
            "photo_latency_s": summary(latencies, 2),  # POST /uploads -> terminal state, per photo
            "functions": stages.functions(elapsed),
            "http": stages.http(),
        },
    }


def run_size(args: argparse.Namespace, count: int) -> dict[str, Any]:
    photos = Photos.build(count, args.bad_every)
    load_before = os.getloadavg()
    baseline_before, baseline_cpu_before = transform_only(photos)
    stack = LocalStack(
        ROOT / "template.yaml",
        port=0,
        stack_name="photopipe-bench",
        write_state=False,
        env_overrides=QUIET,
        moto_process=args.moto == "process",
        concurrency=args.concurrency or concurrency_from_environment(default=machine_concurrency()),
    )
    with stack:
        load_start = os.getloadavg()
        result = run_pipeline(stack, photos, args.uploaders, args.timeout)
        load_end = os.getloadavg()
        environments = {lid: f.environments for lid, f in stack.functions.items() if f.environments > 1}
        concurrency = {s.name: s.concurrency for s in stack.event_sources}
    baseline_after, baseline_cpu_after = transform_only(photos)
    baseline = statistics.fmean([baseline_before, baseline_after])
    baseline_cpu = statistics.fmean([baseline_cpu_before, baseline_cpu_after])
    efficiency = result["photos_per_s"] / baseline
    pipeline_cpu = result["cpu_s_per_photo"]["total"]
    return {
        "workload": {
            "photos": count,
            "not_images": photos.bad,
            "uploaders": args.uploaders,
            "megabytes": photos.megabytes,
        },
        "stack": {
            "moto": args.moto,
            "batches_in_flight_at_most": concurrency,
            "environments_made": environments,
        },
        "load_average_1m": {"before": round(load_before[0], 2), "start": round(load_start[0], 2)}
        | {"end": round(load_end[0], 2)},
        "pipeline": result,
        "baseline_transform_only_photos_per_s": {
            "before": round(baseline_before, 2),
            "after": round(baseline_after, 2),
            "mean": round(baseline, 2),
            "cpu_s_per_photo": round(baseline_cpu, 4),
        },
        "pipeline_efficiency": round(efficiency, 3),
        # The same ratio in CPU time: what a quiet machine's wall clock would show if nothing waited.
        "cpu_efficiency": round(baseline_cpu / pipeline_cpu, 3) if pipeline_cpu else None,
        "pass": {
            "none_lost": result["lost"] == 0,
            "rejected_as_expected": result["states"].get("rejected", 0) == photos.bad,
            "pipeline_efficiency": efficiency >= GOALS["pipeline_efficiency_min"],
        },
    }


@contextlib.contextmanager
def stdout_for_json_only() -> Iterator[io.TextIOWrapper]:
    """Point file descriptor 1 at stderr for the run (Powertools' log and metric lines, anything a library
    prints, child processes), and yield the real stdout for the JSON."""
    sys.stdout.flush()
    real = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(real, "w", closefd=False) as out:
            yield out
    finally:
        sys.stdout.flush()
        os.dup2(real, 1)
        os.close(real)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, nargs="+", default=[100], help="one run per size")
    parser.add_argument("--bad-every", type=int, default=10, help="every Nth upload is no image (0: none)")
    parser.add_argument("--uploaders", type=int, default=8, help="concurrent uploading clients")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds to wait for the pipeline")
    parser.add_argument(
        "--moto", choices=["thread", "process"], default="process", help="where moto runs (as `make run`)"
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        help="environments per function (default: as `make run`, one per core up to 4)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for handler in logging.getLogger().handlers:  # the stages' INFO records are collected, not printed
        handler.setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's per-request log, with --moto thread

    with stdout_for_json_only() as out:
        runs = [run_size(args, count) for count in args.photos]
        smallest, largest = runs[0]["pipeline"]["photos_per_s"], runs[-1]["pipeline"]["photos_per_s"]
        scaling = largest / smallest if len(runs) > 1 and smallest else None
        passed = {f"{r['workload']['photos']}_photos": r["pass"] for r in runs}
        if scaling is not None:
            passed["scaling"] = scaling >= GOALS["scaling_min"]
        report = {
            "benchmark": "e2e_local",
            "environment": {"python": platform.python_version(), "cpus": os.cpu_count()}
            | {"load_average_1m_5m_15m": [round(x, 2) for x in os.getloadavg()]},
            "goals": GOALS,
            "runs": runs,
            "scaling": None if scaling is None else round(scaling, 3),
            "pass": passed,
        }
        out.write(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
