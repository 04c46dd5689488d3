"""Measure how far re-encoded copies of a photo land from it in pHash bits, how far distinct photos land
from each other, and what the classification cache's banded lookup finds at each threshold.

    .venv/bin/python benchmarks/near_duplicates.py

Prints one JSON object. Every hash is what ingest stores: `transform(read_original(...)).phash` on the
bytes of a file. The originals are the photographs bundled with scikit-image and matplotlib, read from
disk byte for byte (nothing is downloaded); `EXCLUDED` says what was left out and why. Each original gets
the copies in `COPIES` (the target: re-encoded, resized or recompressed by a phone or a chat app; each
keeps the original's ICC profile) and those in `INFORMATIONAL`, reported but not counted: framing changes
a pHash is not meant to survive, and a re-encode that drops a non-sRGB profile (colours shift).

The baseline is a full scan (pure distance, every pair compared); the banded lookup is compared against it
in the same run (`banded_vs_scan_recall`). A second, informational negative set, 200 tiny (25x25) LFW
face and non-face crops bundled with scikit-image, checks the false-hit tail on many similar pictures."""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import platform
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "photopipe"))

from photopipe.classification import neardup  # noqa: E402
from photopipe.imaging import Limits, read_original, transform  # noqa: E402

LIMITS = Limits()
TARGET = {"recall_min": 0.95, "false_hits_max": 0}
THRESHOLDS = range(21)
CACHE_SIZES = (100_000, 1_000_000)
ORIENTATION_TAG = 0x0112

# name: file in skimage's data directory. All are photographs (camera, scanner or microscope).
SKIMAGE_PHOTOS = {
    "astronaut": "astronaut.png",
    "camera": "camera.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
    "immunohistochemistry": "ihc.png",
    "retina": "retina.jpg",
    "motorcycle_left": "motorcycle_left.png",
    "coins": "coins.png",
    "moon": "moon.png",
    "page": "page.png",
    "text": "text.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
    "clock": "clock_motion.png",
    "cell": "cell.png",
    "microaneurysms": "microaneurysms.png",
}
MATPLOTLIB_PHOTOS = {"grace_hopper": "grace_hopper.jpg"}
EXCLUDED = {
    "skimage cat": "the same pixels as chelsea (an alias), not a distinct photo",
    "skimage stereo_motorcycle right view": "the other half of a stereo pair: the same scene a few pixels "
    "to the side, a near-duplicate rather than a distinct photo; its disparity map is not a photo",
    "skimage lfw_subset": "25x25 crops, far below an upload: only the informational hard-negative set",
    "skimage horse, logo, colorwheel, checkerboard, binary_blobs, shepp_logan_phantom": "synthetic",
    "skimage eagle, lily, kidney, brain, skin, cells3d, ... (fetched datasets)": "need a download",
    "matplotlib Minduka_Present_Blue_Pack.png, logo2.png": "rendered clip art and a logo, not photos",
    "matplotlib topobathy.npz, jacksboro_fault_dem.npz, s1045.ima.gz": "elevation models and an MRI slice",
}


# --- copies -----------------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


@dataclass(frozen=True)
class Source:
    """An original decoded upright, and the ICC profile its pixels are in (kept by every copy)."""

    image: Image.Image  # mode RGB or L
    icc_profile: bytes | None

    def save(self, image: Image.Image, fmt: str, **params: Any) -> bytes:
        if self.icc_profile:
            params["icc_profile"] = self.icc_profile
        return encode(image, fmt, **params)


Copy = Callable[[Source], bytes]


def jpeg(quality: int) -> Copy:
    return lambda src: src.save(src.image, "JPEG", quality=quality)


def webp(quality: int) -> Copy:
    return lambda src: src.save(src.image, "WEBP", quality=quality)


def resized(scale: float) -> Copy:
    def copy(src: Source) -> bytes:
        im = src.image
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        return src.save(im.resize(size, Image.Resampling.BICUBIC), "JPEG", quality=85)

    return copy


def brightness(factor: float) -> Copy:
    return lambda src: src.save(ImageEnhance.Brightness(src.image).enhance(factor), "JPEG", quality=85)


def exif_rotated(src: Source) -> bytes:
    """Stored turned a quarter, shown upright by EXIF Orientation=6 (as a phone held sideways saves it)."""
    exif = Image.Exif()
    exif[ORIENTATION_TAG] = 6
    stored = src.image.transpose(Image.Transpose.ROTATE_90)
    return src.save(stored, "JPEG", quality=85, exif=exif.tobytes())


def chat_app(src: Source) -> bytes:
    """What messaging apps send: long side at most 1280 (never enlarged), bilinear, JPEG q70."""
    copy = src.image.copy()
    copy.thumbnail((1280, 1280), Image.Resampling.BILINEAR)
    return src.save(copy, "JPEG", quality=70)


def _on_screen(im: Image.Image) -> Image.Image:
    """The photo as a viewer shows it, fitted at 80 % (bilinear), captured as opaque RGBA."""
    size = (max(1, round(im.width * 0.8)), max(1, round(im.height * 0.8)))
    return im.convert("RGB").resize(size, Image.Resampling.BILINEAR).convert("RGBA")


def screenshot(src: Source) -> bytes:
    return src.save(_on_screen(src.image), "PNG")


def screenshot_framed(src: Source) -> bytes:
    """A phone screenshot: the photo letterboxed on black under a white status bar."""
    shown = _on_screen(src.image)
    width = shown.width
    height = max(shown.height + shown.height // 2, round(width * 19.5 / 9))
    screen = Image.new("RGBA", (width, height), (0, 0, 0, 255))
    screen.paste(shown, (0, (height - shown.height) // 2))
    screen.paste((255, 255, 255, 255), (0, 0, width, max(8, height // 20)))
    return src.save(screen, "PNG")


def center_crop(src: Source) -> bytes:
    im = src.image
    dx, dy = im.width // 20, im.height // 20
    return src.save(im.crop((dx, dy, im.width - dx, im.height - dy)), "JPEG", quality=85)


def icc_dropped(src: Source) -> bytes:
    """Re-encoded by an app that drops the ICC profile without converting (colours shift unless sRGB)."""
    return encode(src.image, "JPEG", quality=85)


COPIES: dict[str, Copy] = {
    "jpeg_q30": jpeg(30),
    "jpeg_q50": jpeg(50),
    "jpeg_q70": jpeg(70),
    "jpeg_q95": jpeg(95),
    "webp_q75": webp(75),
    "resize_75_jpeg": resized(0.75),
    "resize_50_jpeg": resized(0.50),
    "resize_25_jpeg": resized(0.25),
    "brightness_0.9_jpeg": brightness(0.9),
    "brightness_1.1_jpeg": brightness(1.1),
    "exif_orientation_6_jpeg": exif_rotated,
    "chat_app_1280_q70": chat_app,
    "screenshot_png": screenshot,
}
INFORMATIONAL: dict[str, Copy] = {
    "icc_profile_dropped_jpeg": icc_dropped,
    "screenshot_framed_png": screenshot_framed,
    "center_crop_90_jpeg": center_crop,
}


# --- hashing ----------------------------------------------------------------------------------------


def pipeline_phash(payload: bytes) -> str:
    with read_original(io.BytesIO(payload), LIMITS) as original:
        return transform(original, LIMITS).phash


@dataclass(frozen=True)
class Photo:
    name: str
    original: str  # pHash of the original file
    copies: dict[str, str]  # transform name -> pHash


def hash_photo(item: tuple[str, Path]) -> Photo:
    name, path = item
    payload = path.read_bytes()
    with Image.open(io.BytesIO(payload)) as im:
        upright = ImageOps.exif_transpose(im)
        upright = upright if upright.mode in ("RGB", "L") else upright.convert("RGB")
        upright.load()
        source = Source(upright, im.info.get("icc_profile") or None)
    hashes = {label: pipeline_phash(make(source)) for label, make in {**COPIES, **INFORMATIONAL}.items()}
    return Photo(name, pipeline_phash(payload), hashes)


def photo_files() -> list[tuple[str, Path]]:
    from matplotlib import cbook
    from skimage import data

    files = [(name, Path(data.data_dir) / f) for name, f in SKIMAGE_PHOTOS.items()]
    files += [
        (name, Path(cbook.get_sample_data(f, asfileobj=False))) for name, f in MATPLOTLIB_PHOTOS.items()
    ]
    return files


def lfw_phashes() -> list[str]:
    from skimage import data

    crops = (np.clip(data.lfw_subset(), 0.0, 1.0) * 255).round().astype(np.uint8)
    return [pipeline_phash(encode(Image.fromarray(c), "PNG")) for c in crops]


# --- lookups ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """`count` equal bands; a lookup reads the exact band values and, with `probe` = 1, every value one bit
    away too (the multi-probe variant proposed as a fix, not what `neardup` implements)."""

    count: int
    probe: int = 0

    @property
    def name(self) -> str:
        return f"bands_{self.count}x{64 // self.count}" + (f"_probe{self.probe}" if self.probe else "")

    @property
    def bits(self) -> int:
        return 64 // self.count

    def masks(self) -> list[int]:
        ones = (1 << self.bits) - 1
        return [ones << (64 - (i + 1) * self.bits) for i in range(self.count)]

    def finds(self, a: str, b: str) -> bool:
        """Whether a lookup of `a` reaches an item written for `b`."""
        diff = int(a, 16) ^ int(b, 16)
        return any((diff & mask).bit_count() <= self.probe for mask in self.masks())

    def keys_read_per_lookup(self) -> int:
        return self.count * (1 + self.bits) if self.probe else self.count

    def costs(self) -> dict[str, Any]:
        per_key = 2.0**-self.bits
        return {
            "bands": self.count,
            "bits_per_band": self.bits,
            "keys_read_per_lookup": self.keys_read_per_lookup(),
            # Every hash has 32 bits set (median threshold), so distances are even: an odd bound rounds down.
            "always_found_up_to_distance": (self.count * (self.probe + 1) - 1) // 2 * 2,
            "expected_random_candidates_per_lookup": {
                str(n): round(n * self.keys_read_per_lookup() * per_key, 1) for n in CACHE_SIZES
            },
        }


LAYOUTS = (Layout(4), Layout(8), Layout(16), Layout(4, probe=1))


# --- statistics -------------------------------------------------------------------------------------


def summary(distances: Sequence[int]) -> dict[str, Any]:
    return {
        "n": len(distances),
        "min": min(distances),
        "median": statistics.median(distances),
        "max": max(distances),
        "hist": {str(d): c for d, c in sorted(Counter(distances).items())},
    }


def tail_summary(distances: Sequence[int]) -> dict[str, Any]:
    """For large sets: the low tail in full, the rest as mean and spread."""
    ordered = sorted(distances)
    return {
        "n": len(ordered),
        "min": ordered[0],
        "median": statistics.median(ordered),
        "mean": round(statistics.fmean(ordered), 2),
        "stdev": round(statistics.pstdev(ordered), 2),
        "max": ordered[-1],
        "hist_up_to_20": {str(d): c for d, c in sorted(Counter(ordered).items()) if d <= 20},
    }


def binomial_cdf(n: int, k: float) -> float:
    """P(Binomial(n, 1/2) <= k)."""
    top = math.floor(k)
    return sum(math.comb(n, i) for i in range(min(top, n) + 1)) / 2**n if top >= 0 else 0.0


def false_hit_model(distinct: Sequence[int], threshold: int) -> dict[str, Any]:
    """Extrapolate the false-hit rate past the pairs measured (an upper bound: banding only removes hits).

    Bits of natural photos' hashes are correlated, so the distance between distinct photos can spread
    more than Binomial(64, 1/2). Model it as 64/n x Binomial(n, 1/2) with n = 1024 / variance ("effective
    independent bits", at most 64), which matches the measured spread, and read the tail off it."""
    effective_bits = max(1, min(64, round(1024 / statistics.pvariance(distinct))))
    p = binomial_cdf(effective_bits, threshold * effective_bits / 64)
    return {
        "effective_bits": effective_bits,
        "p_distinct_pair_within_threshold": float(f"{p:.3g}"),
        "expected_false_hits_per_lookup": {str(n): float(f"{n * p:.3g}") for n in CACHE_SIZES},
    }


@dataclass(frozen=True)
class Pairs:
    """Pairs of hashes with their distances and, per layout, whether a lookup finds them."""

    distances: list[int]
    found: dict[str, list[bool]]

    @classmethod
    def of(cls, pairs: Sequence[tuple[str, str]]) -> Pairs:
        return cls(
            [neardup.distance(a, b) for a, b in pairs],
            {layout.name: [layout.finds(a, b) for a, b in pairs] for layout in LAYOUTS},
        )

    def within(self, threshold: int, layout: str | None) -> int:
        found = self.found[layout] if layout else [True] * len(self.distances)
        return sum(1 for d, f in zip(self.distances, found, strict=True) if f and d <= threshold)

    def found_rate(self, layout: str) -> float:
        return round(sum(self.found[layout]) / len(self.distances), 4)


def sweep(positives: Pairs, negatives: Pairs) -> dict[str, dict[str, str]]:
    """Recall of `positives` and false hits among `negatives` at each threshold, by scan and by lookup."""
    out = {}
    for layout in [None, *(x.name for x in LAYOUTS)]:
        out[layout or "scan"] = {
            str(t): f"recall {positives.within(t, layout) / len(positives.distances):.4f}, "
            f"false hits {negatives.within(t, layout)}"
            for t in THRESHOLDS
        }
    return out


def false_hits(negatives: Pairs) -> dict[str, list[int]]:
    return {
        layout or "scan": [negatives.within(t, layout) for t in THRESHOLDS]
        for layout in [None, *(x.name for x in LAYOUTS)]
    }


# --- main -------------------------------------------------------------------------------------------


def versions(photo: Photo) -> list[str]:
    return [photo.original, *(photo.copies[label] for label in COPIES)]


def main() -> dict[str, Any]:
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=min(2, os.cpu_count() or 1)) as pool:
        lfw_future = pool.submit(lfw_phashes)
        photos = list(pool.map(hash_photo, photo_files()))
        lfw = lfw_future.result()
    hashing_s = time.perf_counter() - started

    # A copy arrives while its original is cached (the target), or any two versions of one photo.
    copy_pairs = [(p.copies[label], p.original) for p in photos for label in COPIES]
    version_pairs = [pair for p in photos for pair in itertools.combinations(versions(p), 2)]
    distinct_pairs = [(a.original, b.original) for a, b in itertools.combinations(photos, 2)]
    cross_pairs = [
        (x, y) for a, b in itertools.combinations(photos, 2) for x in versions(a) for y in versions(b)
    ]
    copies, same, distinct, cross, lfw_distinct = (
        Pairs.of(pairs)
        for pairs in (
            copy_pairs,
            version_pairs,
            distinct_pairs,
            cross_pairs,
            list(itertools.combinations(lfw, 2)),
        )
    )

    chosen = Layout(neardup.BAND_COUNT)
    assert all(frozenset(neardup.bands(h)) == band_keys(h, chosen) for h in lfw), "layout mismatch"
    t = neardup.MAX_DISTANCE
    recall = copies.within(t, chosen.name) / len(copy_pairs)
    scan_recall = copies.within(t, None) / len(copy_pairs)
    hits = {
        "distinct_originals": distinct.within(t, chosen.name),
        "versions_of_distinct_photos": cross.within(t, chosen.name),
        "lfw_informational": lfw_distinct.within(t, chosen.name),
    }
    missed = [
        f"{p.name}/{label} ({neardup.distance(p.original, p.copies[label])} bits)"
        for p in photos
        for label in COPIES
        if not (chosen.finds(p.copies[label], p.original) and neardup.is_near(p.copies[label], p.original)[0])
    ]
    all_hashes = [h for p in photos for h in versions(p)] + lfw
    return {
        "benchmark": "near_duplicates",
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "target": TARGET,
        "originals": [p.name for p in photos],
        "excluded": EXCLUDED,
        "pairs": {
            "copy_to_original": len(copy_pairs),
            "version_to_version_same_photo": len(version_pairs),
            "distinct_originals": len(distinct_pairs),
            "versions_of_distinct_photos": len(cross_pairs),
            "lfw_distinct_informational": len(lfw_distinct.distances),
        },
        "bits_set_per_hash": dict(Counter(str(int(h, 16).bit_count()) for h in all_hashes)),
        "copy_to_original_distance": {
            label: {
                "counted": label in COPIES,
                **summary([neardup.distance(p.original, p.copies[label]) for p in photos]),
                "worst": max(photos, key=lambda p: neardup.distance(p.original, p.copies[label])).name,
            }
            for label in [*COPIES, *INFORMATIONAL]
        },
        "copy_to_original_all_counted": summary(copies.distances),
        "version_to_version_same_photo": summary(same.distances),
        "distinct_originals_distance": tail_summary(distinct.distances),
        "versions_of_distinct_photos_distance": tail_summary(cross.distances),
        "lfw_distinct_distance_informational": tail_summary(lfw_distinct.distances),
        "layouts": {
            layout.name: {
                **layout.costs(),
                "measured_pairs_reached": {
                    "distinct_originals": distinct.found_rate(layout.name),
                    "versions_of_distinct_photos": cross.found_rate(layout.name),
                    "lfw_informational": lfw_distinct.found_rate(layout.name),
                    "uniform_hashes_no_probe": round(1 - (1 - 2.0**-layout.bits) ** layout.count, 4),
                },
            }
            for layout in LAYOUTS
        },
        "sweep_copy_to_original_vs_versions_of_distinct_photos": sweep(copies, cross),
        "sweep_version_to_version_vs_versions_of_distinct_photos": sweep(same, cross),
        "sweep_false_hits_distinct_originals": false_hits(distinct),
        "sweep_false_hits_lfw_informational": false_hits(lfw_distinct),
        "chosen": {
            "layout": chosen.name,
            "BAND_COUNT": neardup.BAND_COUNT,
            "BAND_BITS": neardup.BAND_BITS,
            "MAX_DISTANCE": t,
            "recall_copies_banded": round(recall, 4),
            "recall_copies_scan": round(scan_recall, 4),
            "banded_vs_scan_recall": round(recall / scan_recall, 4),
            "missed_copies": missed,
            "false_hits": hits,
            "margin_bits": {
                "largest_counted_copy_distance": max(copies.distances),
                "smallest_distinct_original_distance": min(distinct.distances),
                "smallest_distance_between_versions_of_distinct_photos": min(cross.distances),
                "smallest_lfw_distance_informational": min(lfw_distinct.distances),
            },
            "false_hit_model": {
                "fitted_on_distinct_originals": false_hit_model(distinct.distances, t),
                "fitted_on_lfw_informational": false_hit_model(lfw_distinct.distances, t),
            },
            "pass": {
                "recall_ge_0.95": recall >= TARGET["recall_min"],
                "zero_false_hits": max(hits["distinct_originals"], hits["versions_of_distinct_photos"])
                <= TARGET["false_hits_max"],
            },
        },
        "seconds": {"hashing": round(hashing_s, 1), "total": round(time.perf_counter() - started, 1)},
    }


def band_keys(phash: str, layout: Layout) -> frozenset[str]:
    digits = layout.bits // 4
    return frozenset(f"{i}:{phash[i * digits : (i + 1) * digits]}" for i in range(layout.count))


if __name__ == "__main__":
    print(json.dumps(main(), indent=1))
