"""Pixel modes and colour: CMYK, 16-bit, alpha, grayscale, palette, bilevel, integer and float data, and
ICC profiles. Every output is RGB (the WebP thumbnail may keep alpha)."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from photopipe.imaging import Rendition, TransformResult

Process = Callable[..., TransformResult]
Encode = Callable[..., bytes]


def open_rendition(rendition: Rendition) -> Image.Image:
    image = Image.open(io.BytesIO(rendition.data))
    image.load()
    return image


def rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=float)


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(rgb(a) - rgb(b)).mean())


def assert_outputs_are_rgb(result: TransformResult) -> None:
    assert open_rendition(result.preview).mode == "RGB"
    assert open_rendition(result.thumbnail).mode in ("RGB", "RGBA")


def test_cmyk_jpeg_looks_like_the_rgb_photo(coffee: Image.Image, encode: Encode, process: Process) -> None:
    # GIVEN a CMYK JPEG as Photoshop exports it (Pillow writes Adobe's inverted CMYK)
    payload = encode(coffee.convert("CMYK"), "JPEG", quality=95)

    # WHEN it is transformed
    result = process(payload)

    # THEN the preview is RGB and shows the same colours as the RGB original
    assert_outputs_are_rgb(result)
    assert mean_abs_diff(open_rendition(result.preview), coffee) < 8


def test_16_bit_grayscale_png_is_not_clipped_to_white(encode: Encode, process: Process) -> None:
    # GIVEN the camera photo as a 16-bit grayscale PNG (I;16) and as an 8-bit one
    from skimage import data

    gray8 = data.camera()
    png16 = encode(Image.fromarray(gray8.astype(np.uint16) * 257), "PNG")
    assert Image.open(io.BytesIO(png16)).mode == "I;16"

    # WHEN it is transformed
    preview = open_rendition(process(png16).preview)

    # THEN its brightness is that of the 8-bit photo, not a white sheet
    assert preview.mode == "RGB"
    assert abs(rgb(preview).mean() - gray8.mean()) < 2
    assert mean_abs_diff(preview, Image.fromarray(gray8)) < 3


def test_16_bit_rgb_png_keeps_its_colours(
    coffee: Image.Image, rgb16_png: bytes, encode: Encode, process: Process
) -> None:
    # GIVEN the coffee photo as a 16-bit-per-channel RGB PNG, and as an 8-bit one
    result = process(rgb16_png)
    preview_8_bit = open_rendition(process(encode(coffee, "PNG")).preview)

    # THEN its preview is the same as the 8-bit photo's: same colours, same brightness
    preview = open_rendition(result.preview)
    assert preview.mode == "RGB"
    assert (result.width, result.height) == (600, 400)
    assert mean_abs_diff(preview, preview_8_bit) < 1.5
    assert abs(rgb(preview).mean() - rgb(coffee).mean()) < 2


def test_rgba_transparency_becomes_white_in_the_jpeg_preview(
    coffee: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN an RGBA PNG whose left half is fully transparent (with red underneath)
    rgba = coffee.convert("RGBA")
    rgba.paste((255, 0, 0, 0), (0, 0, 300, 400))

    # WHEN it is transformed
    result = process(encode(rgba, "PNG"))

    # THEN the transparent half is white in the preview and the photo shows in the other half
    preview = rgb(open_rendition(result.preview))
    assert preview[:, :290].mean(axis=(0, 1)) == pytest.approx([255, 255, 255], abs=3)
    assert np.abs(preview[:, 310:] - rgb(coffee)[:, 310:]).mean() < 8
    # AND the WebP thumbnail keeps the transparency
    thumb = open_rendition(result.thumbnail)
    assert thumb.mode == "RGBA"
    alpha = np.asarray(thumb.getchannel("A"))
    assert alpha[:, :120].max() == 0
    assert alpha[:, 136:].min() == 255


def test_grayscale_with_alpha_is_composited_on_white(encode: Encode, process: Process) -> None:
    # GIVEN an LA PNG: mid-grey, transparent top half
    la = Image.new("LA", (200, 100), (128, 255))
    la.paste((0, 0), (0, 0, 200, 50))

    result = process(encode(la, "PNG"))

    preview = rgb(open_rendition(result.preview))
    assert preview[:45].mean() == pytest.approx(255, abs=2)
    assert preview[55:].mean() == pytest.approx(128, abs=3)
    assert open_rendition(result.thumbnail).mode == "RGBA"


def test_palette_with_transparent_index_becomes_white(
    coffee: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN a palette GIF whose colour 0 is transparent and fills the top 100 rows
    palette = coffee.quantize(255)
    palette.paste(255, (0, 0, 600, 100))  # index 255 is unused by the 255-colour palette
    payload = encode(palette, "GIF", transparency=255)

    result = process(payload)

    preview = rgb(open_rendition(result.preview))
    assert preview[:95].mean(axis=(0, 1)) == pytest.approx([255, 255, 255], abs=3)
    assert np.abs(preview[110:] - rgb(coffee)[110:]).mean() < 15


def test_png_with_a_transparent_colour_key_becomes_white(encode: Encode, process: Process) -> None:
    # GIVEN an RGB PNG with a tRNS colour key: pure green means transparent
    image = Image.new("RGB", (100, 100), (0, 255, 0))
    image.paste((200, 30, 30), (50, 0, 100, 100))

    preview = rgb(open_rendition(process(encode(image, "PNG", transparency=(0, 255, 0))).preview))

    assert preview[:, :45].mean(axis=(0, 1)) == pytest.approx([255, 255, 255], abs=3)
    assert preview[:, 55:].mean(axis=(0, 1)) == pytest.approx([200, 30, 30], abs=6)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "JPEG"), ("L", "PNG"), ("P", "PNG"), ("P", "BMP"), ("1", "PNG"), ("1", "TIFF"), ("I", "TIFF")],
)
def test_grayscale_palette_bilevel_and_integer_modes_render_in_rgb(
    mode: str, fmt: str, astronaut: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN the astronaut in `mode`
    source = {
        "P": astronaut.quantize(256, dither=Image.Dither.NONE),
        "I": astronaut.convert("L").convert("I"),
    }.get(mode) or astronaut.convert(mode)
    payload = encode(source, fmt)

    result = process(payload)

    # THEN the outputs are RGB and look like the source
    assert_outputs_are_rgb(result)
    assert mean_abs_diff(open_rendition(result.preview), source) < (40 if mode == "1" else 8)


def test_float_tiff_is_scaled_not_clipped(encode: Encode, process: Process) -> None:
    # GIVEN a 32-bit float TIFF holding values 0..1 (a horizontal ramp)
    ramp = np.tile(np.linspace(0.0, 1.0, 256, dtype=np.float32), (64, 1))

    preview = rgb(open_rendition(process(encode(Image.fromarray(ramp, mode="F"), "TIFF")).preview))

    # THEN it is rendered as a dark-to-light ramp
    assert preview[:, :8].mean() < 10
    assert preview[:, -8:].mean() > 245
    assert preview.mean() == pytest.approx(127.5, abs=4)


def test_animated_gif_uses_the_first_frame(
    coffee: Image.Image, chelsea: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN a two-frame animated GIF: coffee, then the cat
    frames = [coffee.quantize(256), chelsea.resize((600, 400)).quantize(256)]
    payload = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(payload)), "n_frames", 1) == 2

    result = process(payload)

    # THEN the preview is the coffee frame
    preview = open_rendition(result.preview)
    assert mean_abs_diff(preview, coffee) < mean_abs_diff(preview, chelsea.resize((600, 400))) / 2


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
def test_wide_gamut_icc_profile_is_converted_to_srgb(
    mode: str, encode: Encode, process: Process, swapped_rb_profile: bytes
) -> None:
    # GIVEN a PNG whose ICC profile says its "red" channel is sRGB's blue (and vice versa)
    image = Image.new(mode, (64, 64), (255, 0, 0, 255)[: len(mode)])
    image.paste((0, 255, 0, 255)[: len(mode)], (32, 0, 64, 64))

    result = process(encode(image, "PNG", icc_profile=swapped_rb_profile))

    # THEN the colours are converted: the left half is shown blue, the right half stays green
    preview = rgb(open_rendition(result.preview))
    assert preview[:, :28].mean(axis=(0, 1)) == pytest.approx([0, 0, 255], abs=12)
    assert preview[:, 36:].mean(axis=(0, 1)) == pytest.approx([0, 255, 0], abs=12)
    # AND the thumbnail agrees (opaque pictures lose their alpha channel)
    thumb = open_rendition(result.thumbnail)
    assert thumb.mode == "RGB"
    assert rgb(thumb)[:, :24].mean(axis=(0, 1)) == pytest.approx([0, 0, 255], abs=12)


def test_srgb_profile_changes_nothing(coffee: Image.Image, encode: Encode, process: Process) -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()

    tagged = open_rendition(process(encode(coffee, "JPEG", quality=95, icc_profile=srgb)).preview)
    untagged = open_rendition(process(encode(coffee, "JPEG", quality=95)).preview)

    assert mean_abs_diff(tagged, untagged) < 0.5


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_unreadable_icc_profile_does_not_stop_the_photo(
    fmt: str, coffee: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN a photo carrying a broken ICC profile
    payload = encode(coffee, fmt, icc_profile=b"this is not an ICC profile" * 10)

    # WHEN it is transformed THEN it is accepted and looks like the photo
    result = process(payload)
    assert mean_abs_diff(open_rendition(result.preview), coffee) < 8


def test_lab_tiff_is_converted_to_srgb(coffee: Image.Image, encode: Encode, process: Process) -> None:
    from PIL import ImageCms

    # GIVEN the coffee photo stored as CIE L*a*b* in a TIFF
    to_lab = ImageCms.buildTransform(
        ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB"
    )
    payload = encode(ImageCms.applyTransform(coffee, to_lab), "TIFF")

    # THEN the preview shows the photo's colours
    assert mean_abs_diff(open_rendition(process(payload).preview), coffee) < 6


def test_16_bit_values_in_a_32_bit_integer_image_are_scaled(
    astronaut: Image.Image, encode: Encode, process: Process
) -> None:
    # GIVEN a 32-bit integer TIFF (mode I) holding 16-bit values (0..65535)
    gray = np.asarray(astronaut.convert("L"), dtype=np.int32) * 257
    payload = encode(Image.fromarray(gray, mode="I"), "TIFF")

    # THEN it renders like the 8-bit photo instead of saturating
    preview = open_rendition(process(payload).preview)
    assert mean_abs_diff(preview, astronaut.convert("L")) < 4
