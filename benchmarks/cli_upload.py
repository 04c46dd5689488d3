"""The `photopipe` command on the local stack; prints one JSON object (nothing else on stdout).

    .venv/bin/python benchmarks/cli_upload.py [--photos 200] [--already 0.3] [--help-runs 10]

Three figures, each against a baseline measured in the same run:
- `photopipe upload DIR` of N photos with `--jobs 1` (the baseline) and `--jobs 8`: photos/s and the
  ratio. Each run starts with an idle stack and a fresh upload journal, so both send every photo.
- A rerun after 30 % of the folder already arrived: the bytes the journal spared, and the time
  against the full `--jobs 8` upload.
- `photopipe --help` start-up, median of several runs, against the interpreter starting and exiting
  (`python -c pass`) and against importing Typer alone.

The CLI runs as its own process, as a user runs it; the stack runs in this process (its ingest competes
for the same CPUs while the uploads run, as it does under `make run`)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "photopipe")

from photopipe_local import LocalStack  # noqa: E402

PASSWORD = "benchmark-password"  # noqa: S105 - a throwaway local account
PHOTOPIPE = str(Path(sys.executable).with_name("photopipe"))


def make_photos(folder: Path, n: int) -> int:
    """N distinct phone-ish JPEGs (1280x960, real photo content plus noise); returns their bytes."""
    from skimage import data

    sources = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(11)
    folder.mkdir(parents=True)
    total = 0
    for i in range(n):
        base = Image.fromarray(sources[i % len(sources)]).resize((1280, 960), Image.Resampling.BILINEAR)
        noisy = np.asarray(base).astype(np.int16) + rng.normal(0, 4, (960, 1280, 3)).astype(np.int16)
        buf = io.BytesIO()
        Image.fromarray(noisy.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=88)
        (folder / f"IMG_{i:04d}.jpg").write_bytes(buf.getvalue())
        total += len(buf.getvalue())
    return total


def cli(env: dict[str, str], *args: str, stdin: str = "") -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run(
        [PHOTOPIPE, *args], input=stdin, capture_output=True, text=True, env=env, timeout=3600, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"photopipe {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    data = json.loads(done.stdout) if done.stdout.strip() else {}
    return {"wall_s": wall, **data}


def upload(env: dict[str, str], journal_dir: Path, paths: list[Path], jobs: int) -> dict[str, Any]:
    result = cli(
        env | {"PHOTOPIPE_STATE_DIR": str(journal_dir)},
        "upload",
        *map(str, paths),
        "--jobs",
        str(jobs),
        "--json",
    )
    summary = result["summary"]
    return {
        "jobs": jobs,
        "uploaded": summary["uploaded"],
        "skipped_already_uploaded": summary["already_uploaded"],
        "bytes_sent": summary["bytes_sent"],
        "bytes_not_sent": summary["bytes_not_sent"],
        "seconds": round(summary["seconds"], 2),
        "wall_seconds": round(result["wall_s"], 2),
        "photos_per_s": round(summary["uploaded"] / summary["seconds"], 2) if summary["seconds"] else None,
    }


def startup(command: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True, timeout=60)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--already", type=float, default=0.3, help="share already uploaded before the rerun")
    parser.add_argument("--help-runs", type=int, default=10)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="photopipe-cli-bench-"))
    folder = work / "Pictures"
    megabytes = make_photos(folder, args.photos) / 1e6
    photos = sorted(folder.iterdir())
    quiet = {
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "PHOTOPIPE_CLASSIFIER": "none",
    }
    # the stack's functions print their metrics (EMF) to stdout: this script's stdout is its JSON only
    with (
        contextlib.redirect_stdout(sys.stderr),
        LocalStack(
            ROOT / "template.yaml",
            port=0,
            stack_name="photopipe-bench-cli",
            write_state=False,
            env_overrides=quiet,
        ) as stack,
    ):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOTOPIPE_")}
        env |= {
            "PHOTOPIPE_API_URL": stack.api_url,
            "PHOTOPIPE_CONFIG_DIR": str(work / "config"),
            "NO_COLOR": "1",
        }
        cli(
            env,
            "register",
            "--username",
            "bench",
            "--email",
            "bench@example.com",
            "--password-stdin",
            "--json",
            stdin=PASSWORD,
        )

        stack.wait_idle(600)
        one = upload(env, work / "journal-1", [folder], jobs=1)
        stack.wait_idle(600)
        eight = upload(env, work / "journal-8", [folder], jobs=8)
        stack.wait_idle(600)
        cut = round(len(photos) * args.already)
        first = upload(env, work / "journal-rerun", photos[:cut], jobs=8)
        stack.wait_idle(600)
        rerun = upload(env, work / "journal-rerun", [folder], jobs=8)
        stack.wait_idle(600)

    help_ms = startup([PHOTOPIPE, "--help"], args.help_runs)
    python_ms = startup([sys.executable, "-c", "pass"], args.help_runs)
    typer_ms = startup([sys.executable, "-c", "import typer"], args.help_runs)
    print(
        json.dumps(
            {
                "benchmark": "cli_upload",
                "environment": {"python": platform.python_version(), "cpus": os.cpu_count()},
                "workload": {
                    "photos": args.photos,
                    "megabytes": round(megabytes, 1),
                    "photo_px": [1280, 960],
                },
                "upload": {
                    "baseline_jobs_1": one,
                    "jobs_8": eight,
                    "speedup_jobs_8_vs_1": round(eight["photos_per_s"] / one["photos_per_s"], 2),
                },
                "rerun_with_already_uploaded": {
                    "already_uploaded_share": args.already,
                    "first_run": first,
                    "rerun": rerun,
                    "bytes_not_sent": rerun["bytes_not_sent"],
                    "share_of_bytes_not_sent": round(
                        rerun["bytes_not_sent"] / (rerun["bytes_sent"] + rerun["bytes_not_sent"]), 3
                    ),
                    "rerun_seconds_vs_full_upload": round(rerun["seconds"] / eight["seconds"], 2),
                },
                "help_startup_ms": {
                    "photopipe_help": help_ms,
                    "baseline_python_c_pass": python_ms,
                    "baseline_import_typer": typer_ms,
                    "help_vs_bare_python": round(help_ms / python_ms, 2),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
