"""Cameras through OpenCV's headless build (no preview window): list, grab a still, record a clip.

A device is a camera index (`0`, `1`, ...) or a video file, which stands in for a camera (that is how
the tests run: there is no camera on a build machine). Imported by the camera commands only."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photopipe_cli.errors import CliError, NotFound, UsageProblem

os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # not OpenCV's warnings for every absent device
import cv2

WARMUP_FRAMES = 5  # a camera's first frames are dark while its auto-exposure settles
PROBE_INDEXES = range(5)  # where no /dev/video* can be listed
DEFAULT_FPS = 30.0
CODECS = {".mp4": "mp4v", ".avi": "MJPG"}


@dataclass(frozen=True)
class Camera:
    index: int
    name: str
    width: int
    height: int
    fps: float


def list_cameras() -> list[Camera]:
    found = []
    for index, name in _candidates():
        capture = _open_index(index)
        try:
            if capture.isOpened():
                found.append(Camera(index, name, *_size(capture), _fps(capture) or 0.0))
        finally:
            capture.release()
    return found


def _candidates() -> list[tuple[int, str]]:
    if sys.platform.startswith("linux"):
        nodes = sorted(Path("/dev").glob("video[0-9]*"), key=lambda p: int(p.name[5:]))
        names = []
        for node in nodes:
            label = Path("/sys/class/video4linux") / node.name / "name"
            try:
                name = label.read_text().strip()
            except OSError:
                name = str(node)
            names.append((int(node.name[5:]), name))
        return names
    return [(i, f"camera {i}") for i in PROBE_INDEXES]


def _open_index(index: int) -> Any:
    backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    return cv2.VideoCapture(index, backend)


def _size(capture: Any) -> tuple[int, int]:
    return int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))


def _fps(capture: Any) -> float | None:
    fps = float(capture.get(cv2.CAP_PROP_FPS) or 0)
    return fps if 0 < fps < 1000 else None


class Source:
    """An opened device: a camera by index, or a video file."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.is_file = not device.isdigit()
        if self.is_file:
            if not Path(device).is_file():
                raise NotFound(
                    f"no camera or video file {device!r}",
                    hint="DEVICE is a camera index (see `photopipe camera list`) or a video file.",
                )
            self.capture = cv2.VideoCapture(device)
        else:
            self.capture = _open_index(int(device))
        if not self.capture.isOpened():
            self.capture.release()
            what = f"video file {device}" if self.is_file else f"camera {device}"
            raise NotFound(f"cannot open {what}", hint="See `photopipe camera list` for the cameras here.")
        self.fps = _fps(self.capture) or DEFAULT_FPS

    def close(self) -> None:
        self.capture.release()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def frame(self) -> Any | None:
        ok, frame = self.capture.read()
        return frame if ok else None


def capture_still(device: str, output: Path) -> tuple[int, int]:
    """One frame from `device` saved to `output` (format from its extension); returns (width, height)."""
    from PIL import Image

    with Source(device) as source:
        frame = None
        for _ in range(1 if source.is_file else WARMUP_FRAMES):
            got = source.frame()
            frame = got if got is not None else frame
        if frame is None:
            raise CliError(f"{'video file' if source.is_file else 'camera'} {device} gave no picture")
    picture = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        picture.save(output, quality=92) if output.suffix.lower() in (".jpg", ".jpeg") else picture.save(
            output
        )
    except (KeyError, ValueError) as e:
        raise UsageProblem(f"cannot write a picture named {output.name}: use .jpg, .png or .webp") from e
    return picture.width, picture.height


@dataclass(frozen=True)
class Recording:
    frames: int
    fps: float
    width: int
    height: int
    seconds: float
    ended_early: bool


def record(
    device: str, seconds: float, output: Path, on_progress: Callable[[float], None] | None = None
) -> Recording:
    """`seconds` of video from `device` into `output` (.mp4 or .avi). From a camera: as long as that
    takes on the clock; from a video file: that many seconds of its frames (or until it ends)."""
    codec = CODECS.get(output.suffix.lower())
    if codec is None:
        raise UsageProblem(f"cannot record into {output.name}: name it .mp4 or .avi")
    with Source(device) as source:
        first = source.frame()
        if first is None:
            raise CliError(f"{'video file' if source.is_file else 'camera'} {device} gave no picture")
        height, width = first.shape[:2]
        output.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(output), cv2.VideoWriter.fourcc(*codec), source.fps, (width, height))
        if not writer.isOpened():
            raise CliError(f"OpenCV cannot write {codec} video to {output}")
        wanted = max(1, round(seconds * source.fps))
        frames, started, frame = 0, time.monotonic(), first
        try:
            while frame is not None:
                writer.write(frame)
                frames += 1
                elapsed = frames / source.fps if source.is_file else time.monotonic() - started
                if on_progress is not None:
                    on_progress(min(elapsed, seconds))
                if (source.is_file and frames >= wanted) or (not source.is_file and elapsed >= seconds):
                    break
                frame = source.frame()
        finally:
            writer.release()
    recorded = frames / source.fps
    return Recording(
        frames, source.fps, width, height, round(recorded, 3), ended_early=recorded + 1e-9 < seconds
    )
