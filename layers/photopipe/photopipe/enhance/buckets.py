"""Batch-size buckets: the few batch shapes a GPU session ever runs.

A CUDA graph is captured for one input shape and a TensorRT engine is tuned for a range of them; a worker
that ran whatever number of faces it happened to hold would capture (or miss) a graph for every size. So
the session pads each chunk of faces up to the smallest bucket that holds it (zeros, sliced off the
output: the model treats the batch's faces independently) and only ever runs the bucket shapes, each
warmed up (engine built, graph captured) at start.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def bucket_sizes(max_batch: int) -> tuple[int, ...]:
    """The default buckets: powers of two below `max_batch`, and `max_batch` itself (8 → 1, 2, 4, 8;
    12 → 1, 2, 4, 8, 12): at most half of a padded run is padding."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, not {max_batch}")
    sizes = []
    size = 1
    while size < max_batch:
        sizes.append(size)
        size *= 2
    sizes.append(max_batch)
    return tuple(sizes)


def parse_buckets(text: str | Iterable[int] | None, max_batch: int) -> tuple[int, ...]:
    """Buckets from a setting (`"1,4,16,32"`) or the default for `max_batch`. Sorted, unique, positive;
    the largest is the session's chunk size, so it must equal `max_batch`."""
    if text is None or text == "":
        return bucket_sizes(max_batch)
    raw = [int(part) for part in text.split(",") if part.strip()] if isinstance(text, str) else list(text)
    sizes = tuple(sorted(set(raw)))
    if not sizes or sizes[0] < 1:
        raise ValueError(f"batch buckets must be positive integers, got {raw}")
    if sizes[-1] != max_batch:
        raise ValueError(f"the largest batch bucket ({sizes[-1]}) must equal the maximum batch ({max_batch})")
    return sizes


def bucket_for(count: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds `count` faces."""
    for size in buckets:
        if size >= count:
            return size
    raise ValueError(f"{count} faces do not fit the largest bucket ({buckets[-1]})")


def plan_batches(count: int, buckets: Sequence[int]) -> list[tuple[int, int]]:
    """How `count` faces are run: chunks of the largest bucket, the rest padded to its bucket.
    A list of (faces, padded size): 13 faces with buckets 1, 2, 4, 8 → [(8, 8), (5, 8)]."""
    largest = buckets[-1]
    plan = [(largest, largest)] * (count // largest)
    rest = count % largest
    if rest:
        plan.append((rest, bucket_for(rest, buckets)))
    return plan


def pad_batch(faces: np.ndarray, size: int) -> np.ndarray:
    """`faces` (n, ...) with zeros appended up to `size` rows (the same array when n == size)."""
    n = faces.shape[0]
    if n == size:
        return faces
    if n > size:
        raise ValueError(f"cannot pad {n} faces down to {size}")
    padding = np.zeros((size - n, *faces.shape[1:]), dtype=faces.dtype)
    return np.concatenate([faces, padding], axis=0)
