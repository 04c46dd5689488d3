"""Identify an upload from its first bytes (never from its name).

`sniff()` returns the accepted `ImageFormat` the bytes start like, or None; `describe()` puts a name on
anything else ("a PDF document", "an HTML page", ...) so a rejection can say what was uploaded."""

from __future__ import annotations

import struct
from dataclasses import dataclass

SNIFF_BYTES = 4096  # how much of the head `sniff` and `describe` want to see


@dataclass(frozen=True)
class ImageFormat:
    name: str  # our name: "jpeg", "png", ...
    label: str  # for people: "JPEG", "PNG", ...
    mime_type: str
    pillow_formats: tuple[str, ...]  # the Pillow plugins allowed to open it


JPEG = ImageFormat("jpeg", "JPEG", "image/jpeg", ("JPEG", "MPO"))
PNG = ImageFormat("png", "PNG", "image/png", ("PNG",))
WEBP = ImageFormat("webp", "WebP", "image/webp", ("WEBP",))
GIF = ImageFormat("gif", "GIF", "image/gif", ("GIF",))
BMP = ImageFormat("bmp", "BMP", "image/bmp", ("BMP",))
TIFF = ImageFormat("tiff", "TIFF", "image/tiff", ("TIFF",))
AVIF = ImageFormat("avif", "AVIF", "image/avif", ("AVIF",))
HEIC = ImageFormat("heic", "HEIC", "image/heic", ("HEIF",))

ALL_FORMATS: tuple[ImageFormat, ...] = (JPEG, PNG, WEBP, GIF, BMP, TIFF, AVIF, HEIC)

_BMP_DIB_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_GENERIC_BRANDS = frozenset({b"mif1", b"msf1", b"mif2"})
_TEXT_CONTROL_OK = frozenset(b"\t\n\r\f\x1b")

# Recognisable non-images, checked in order: (magic at offset 0, what it is).
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or a document packed as one, like .docx or .epub)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\x1f\x8b", "a gzip-compressed file"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!\x1a\x07", "a RAR archive"),
    (b"BZh", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"8BPS", "a Photoshop document (PSD)"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", "a JPEG 2000 codestream"),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "a JPEG XL image"),
    (b"\xff\x0a", "a JPEG XL image"),
    (b"\x00\x00\x01\x00", "a Windows icon (ICO)"),
    (b"\x7fELF", "a Linux executable (ELF)"),
    (b"MZ", "a Windows executable"),
    (b"ID3", "an MP3 audio file"),
    (b"OggS", "an Ogg audio/video file"),
    (b"fLaC", "a FLAC audio file"),
    (b"\x1a\x45\xdf\xa3", "a Matroska/WebM video"),
    (b"SQLite format 3\x00", "an SQLite database"),
)


def sniff(head: bytes) -> ImageFormat | None:
    """The accepted image format `head` (the file's first bytes) starts like, if any."""
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return GIF
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return TIFF
    if _is_bmp(head):
        return BMP
    brands = _isobmff_brands(head)
    if brands & _AVIF_BRANDS:
        return AVIF
    if brands & (_HEIC_BRANDS | _HEIF_GENERIC_BRANDS):
        return HEIC
    return None


def describe(head: bytes) -> str | None:
    """What a non-image `head` looks like, for the rejection message; None if unrecognisable."""
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return what
    if head[:4] == b"RIFF":
        return {b"WAVE": "a WAV audio file", b"AVI ": "an AVI video"}.get(head[8:12], "a RIFF container")
    brands = _isobmff_brands(head)
    if b"crx " in brands:
        return "a Canon CR3 raw photo"
    if brands:
        return "an MP4/QuickTime video"
    return _describe_text(head)


def _is_bmp(head: bytes) -> bool:
    if len(head) < 18 or head[:2] != b"BM":
        return False
    (dib_header_size,) = struct.unpack_from("<I", head, 14)
    return dib_header_size in _BMP_DIB_HEADER_SIZES


def _isobmff_brands(head: bytes) -> frozenset[bytes]:
    """Major and compatible brands of an ISO-BMFF `ftyp` box (HEIF, AVIF, MP4, ...); empty if none."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return frozenset()
    (box_size,) = struct.unpack_from(">I", head, 0)
    end = min(max(box_size, 16), len(head))
    compatible = (head[i : i + 4] for i in range(16, end - 3, 4))
    return frozenset((head[8:12], *compatible))


def _describe_text(head: bytes) -> str | None:
    text = _as_text(head)
    if text is None:
        return None
    lowered = text.lstrip().lower()
    start = lowered[:2048]
    if lowered.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in start:
        return "an HTML page"
    if lowered.startswith("<") and ("<svg" in start or "<!doctype svg" in start):
        return "an SVG drawing (vector graphics)"
    if lowered.startswith("<?xml"):
        return "an XML document"
    if lowered.startswith(("{", "[")):
        return "JSON text"
    if not lowered:
        return "an empty text file (only whitespace)"
    return "plain text"


def _as_text(head: bytes) -> str | None:
    """`head` decoded as UTF-8 (BOM dropped) if it reads like text, else None."""
    head = head.removeprefix(b"\xef\xbb\xbf")
    for cut in range(4):  # the head may end in the middle of a multi-byte character
        try:
            text = head[: len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        if any(ord(c) < 0x20 and ord(c) not in _TEXT_CONTROL_OK for c in text):
            return None
        return text
    return None
