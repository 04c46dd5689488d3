"""Imaging core: read an upload once, identify it by content, guard it, and render an upright JPEG
preview, a WebP thumbnail and a perceptual hash.

Importing this package registers the HEIC (pillow-heif) and, where needed, AVIF openers once."""

from photopipe.imaging.codecs import accepted_formats
from photopipe.imaging.models import Limits, Rendition, SpooledOriginal, TransformResult
from photopipe.imaging.phash import phash, phash_distance
from photopipe.imaging.spool import read_original
from photopipe.imaging.transform import identify, transform

__all__ = [
    "Limits",
    "Rendition",
    "SpooledOriginal",
    "TransformResult",
    "accepted_formats",
    "identify",
    "phash",
    "phash_distance",
    "read_original",
    "transform",
]
