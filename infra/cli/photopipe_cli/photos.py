"""Find the photos in what the user named: files as given, directories walked recursively (sorted, hidden
files and folders skipped, symlinked folders not followed). A file is a photo when its first bytes are
those of an accepted image format (`photopipe.imaging.sniff`), whatever its name says."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from photopipe.imaging.sniff import SNIFF_BYTES, ImageFormat, describe, sniff


@dataclass(frozen=True)
class Found:
    path: Path
    explicit: bool  # named on the command line (not found by walking a directory)
    size: int = 0
    format: ImageFormat | None = None
    problem: str | None = None  # why this is not a photo we can send

    @property
    def is_photo(self) -> bool:
        return self.problem is None and self.format is not None


def find_photos(paths: Sequence[Path]) -> list[Found]:
    found: list[Found] = []
    for path in paths:
        if path.is_dir():
            found.extend(examine(file, explicit=False) for file in _walk(path))
        elif path.exists():
            found.append(examine(path, explicit=True))
        else:
            found.append(Found(path, explicit=True, problem="no such file or directory"))
    return found


def _walk(root: Path) -> Iterator[Path]:
    for directory, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith("."):
                yield Path(directory) / name


def examine(path: Path, *, explicit: bool) -> Found:
    try:
        size = path.stat().st_size
        if not path.is_file():
            return Found(path, explicit, size, problem="not a regular file")
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as e:
        return Found(path, explicit, problem=f"cannot read it ({e.strerror or e})")
    if not head:
        return Found(path, explicit, size, problem="not an image: the file is empty")
    image_format = sniff(head)
    if image_format is None:
        what = describe(head)
        looks = f"it looks like {what}" if what else "its content matches no image format"
        return Found(path, explicit, size, problem=f"not an image: {looks}")
    return Found(path, explicit, size, image_format)
