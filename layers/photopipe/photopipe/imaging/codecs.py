"""Decoder registration, done once when `photopipe.imaging` is imported.

HEIC comes from pillow-heif. AVIF comes from Pillow's own plugin when this Pillow build has one (Pillow
>= 11.2 wheels do), otherwise from pillow-heif's AVIF opener where that version still ships one."""

from __future__ import annotations

import logging

import pillow_heif
from PIL import Image, features

from photopipe.imaging.sniff import ALL_FORMATS, AVIF, ImageFormat

logger = logging.getLogger(__name__)


def _register() -> frozenset[str]:
    """Register the optional openers; return the names of the formats that can be decoded."""
    # Only the primary picture is wanted: skip thumbnails, depth maps and auxiliary images.
    pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    available = {f.name for f in ALL_FORMATS}
    if not features.check("avif"):
        register_avif = getattr(pillow_heif, "register_avif_opener", None)
        if register_avif is None:
            available.discard(AVIF.name)
            logger.warning("no AVIF decoder available: AVIF uploads will be rejected")
        else:
            register_avif()
            logger.info("AVIF decoded by pillow-heif")
    Image.init()
    return frozenset(available)


DECODABLE: frozenset[str] = _register()


def accepted_formats() -> tuple[ImageFormat, ...]:
    """The formats this process accepts, in a stable order."""
    return tuple(f for f in ALL_FORMATS if f.name in DECODABLE)


def pillow_formats(image_format: ImageFormat) -> tuple[str, ...]:
    """The Pillow plugin names registered for `image_format` (pillow-heif's AVIF opener says "AVIF")."""
    return tuple(name for name in image_format.pillow_formats if name in Image.OPEN)
