"""The enhancement pipeline on real photos with faces (scikit-image's astronaut, matplotlib's
grace_hopper): detection, alignment, paste-back, upscaling, the prepare/finish split. The face model is
a pure-numpy stand-in; the tiled upscaler runs a tiny ONNX graph built here. No weights anywhere."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
import onnx
import pytest
import skimage.data
from onnx import TensorProto, helper
from PIL import Image
from pydantic import ValidationError

from photopipe.enhance.faces import (
    FACE_SIZE,
    FFHQ_512_TEMPLATE,
    Face,
    MtcnnDetector,
    ScrfdDetector,
    align_face,
    estimate_alignment,
    feather_mask,
    inverse_affine,
    paste_face,
)
from photopipe.enhance.pipeline import (
    NO_FACE_NOTE,
    PreparedPhoto,
    enhance,
    finish,
    prepare,
)
from photopipe.enhance.upscale import LanczosUpscaler, TiledOnnxUpscaler
from photopipe.errors import ImageRejected
from photopipe.models import EnhanceParams

# --- fixtures and stand-ins -----------------------------------------------------------------------


class IdentityRestorer:
    input_size = 512
    max_batch = 4

    def __init__(self) -> None:
        self.calls: list[int] = []

    def restore(self, faces: np.ndarray) -> np.ndarray:
        self.calls.append(len(faces))
        return faces.copy()


class FlatRestorer(IdentityRestorer):
    """Every face becomes one flat colour (pure red)."""

    def restore(self, faces: np.ndarray) -> np.ndarray:
        self.calls.append(len(faces))
        out = np.full_like(faces, -1.0)
        out[:, 0] = 1.0
        return out


class MirrorRestorer(IdentityRestorer):
    """A deterministic, face-dependent change: mirror left-right and darken."""

    def restore(self, faces: np.ndarray) -> np.ndarray:
        self.calls.append(len(faces))
        return np.ascontiguousarray(faces[:, :, :, ::-1] * 0.8 - 0.1)


def _encode(image: np.ndarray, fmt: str = "PNG", **kwargs: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **kwargs)
    return buf.getvalue()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def detector() -> MtcnnDetector:
    return MtcnnDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage.data.astronaut()


@pytest.fixture(scope="module")
def grace_bytes() -> bytes:
    return Path(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))).read_bytes()


@pytest.fixture(scope="module")
def grace(grace_bytes: bytes) -> np.ndarray:
    return _decode(grace_bytes)


@pytest.fixture(scope="module")
def photos(astronaut: np.ndarray, grace: np.ndarray) -> dict[str, np.ndarray]:
    return {"astronaut": astronaut, "grace_hopper": grace}


# --- detection and alignment ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_mtcnn_finds_the_one_face_with_ordered_landmarks(
    detector: MtcnnDetector, photos: dict[str, np.ndarray], name: str
) -> None:
    faces = detector.detect(photos[name])

    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.box
    assert face.score > 0.95
    assert 60 < x2 - x1 < 300
    assert 60 < y2 - y1 < 300
    assert face.landmarks.shape == (5, 2)
    xs, ys = face.landmarks[:, 0], face.landmarks[:, 1]
    assert np.all((xs > x1) & (xs < x2) & (ys > y1) & (ys < y2))
    left_eye, right_eye, nose, left_mouth, right_mouth = face.landmarks
    assert left_eye[0] < nose[0] < right_eye[0]
    assert left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])


def test_no_face_in_a_cup_of_coffee(detector: MtcnnDetector) -> None:
    assert detector.detect(skimage.data.coffee()) == []


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_alignment_puts_the_landmarks_on_the_ffhq_template(
    detector: MtcnnDetector, photos: dict[str, np.ndarray], name: str
) -> None:
    (face,) = detector.detect(photos[name])
    affine = estimate_alignment(face.landmarks)

    mapped = face.landmarks @ affine[:, :2].T + affine[:, 2]

    error = np.linalg.norm(mapped - FFHQ_512_TEMPLATE, axis=1)
    assert error[:2].max() < 8.0, error  # the eyes
    assert error.max() < 20.0, error  # a similarity cannot fit every face's nose and mouth exactly
    aligned = align_face(photos[name], affine)
    assert aligned.shape == (FACE_SIZE, FACE_SIZE, 3)
    assert aligned.dtype == np.uint8


def test_identity_paste_back_reproduces_the_photo_without_a_seam(
    detector: MtcnnDetector, grace: np.ndarray
) -> None:
    (face,) = detector.detect(grace)
    affine = estimate_alignment(face.landmarks)
    aligned = align_face(grace, affine)
    canvas = grace.copy()

    paste_face(canvas, aligned, affine, scale=1, feather=0.08)

    x1, y1, x2, y2 = (round(v) for v in face.box)
    assert _psnr(canvas[y1:y2, x1:x2], grace[y1:y2, x1:x2]) > 32
    # the seam: where the feathered mask is neither 0 nor 1, the photo must be all but unchanged
    alpha = cv2.warpAffine(feather_mask(512, 0.08), inverse_affine(affine), grace.shape[1::-1])
    ring = (alpha > 0.02) & (alpha < 0.98)
    assert ring.sum() > 1000
    diff = np.abs(canvas.astype(np.int16) - grace.astype(np.int16)).max(axis=2)
    assert diff[ring].mean() < 3.0
    # the blend adds nothing to the resampling error inside the face: no seam
    assert diff[ring].mean() <= diff[alpha >= 0.98].mean() + 0.5
    assert np.array_equal(canvas[alpha == 0], grace[alpha == 0])


def test_paste_back_at_scale_lands_on_the_upscaled_face(detector: MtcnnDetector, grace: np.ndarray) -> None:
    (face,) = detector.detect(grace)
    affine = estimate_alignment(face.landmarks)
    aligned = align_face(grace, affine)
    background = LanczosUpscaler().upscale(grace, 2)
    canvas = background.copy()

    paste_face(canvas, aligned, affine, scale=2, feather=0.08)

    x1, y1, x2, y2 = (round(2 * v) for v in face.box)
    assert _psnr(canvas[y1:y2, x1:x2], background[y1:y2, x1:x2]) > 30


# --- the pipeline ---------------------------------------------------------------------------------


def test_flat_restorer_changes_only_the_face_region(detector: MtcnnDetector, grace_bytes: bytes) -> None:
    params = EnhanceParams(scale=1, quality_level="medium")
    prepared = prepare(grace_bytes, params, detector)

    flat = finish(prepared, FlatRestorer().restore(prepared.faces), LanczosUpscaler())
    plain = finish(prepared, prepared.faces, LanczosUpscaler())  # identity

    out, ref = _decode(flat.jpeg).astype(np.int16), _decode(plain.jpeg).astype(np.int16)
    changed = np.abs(out - ref).max(axis=2) > 12
    square = cv2.warpAffine(np.ones((512, 512), np.uint8), inverse_affine(prepared.affines[0]), (512, 600))
    near = cv2.dilate(square, np.ones((9, 9), np.uint8)).astype(bool)
    assert changed.sum() > 5000
    assert not changed[~near].any()
    x1, y1, x2, y2 = (round(v) for v in prepared.boxes[0])
    centre = out[(y1 + y2) // 2 - 5 : (y1 + y2) // 2 + 5, (x1 + x2) // 2 - 5 : (x1 + x2) // 2 + 5]
    assert np.all(np.abs(centre - (255, 0, 0)) < 12)


def test_prepare_gives_the_models_input_and_timings(detector: MtcnnDetector, grace_bytes: bytes) -> None:
    prepared = prepare(grace_bytes, EnhanceParams(), detector)

    assert prepared.faces.shape == (1, 3, 512, 512)
    assert prepared.faces.dtype == np.float32
    assert prepared.faces.min() >= -1.0
    assert prepared.faces.max() <= 1.0
    assert prepared.affines.shape == (1, 2, 3)
    assert prepared.landmarks.shape == (1, 5, 2)
    assert set(prepared.timings) == {"decode", "detect", "align"}
    assert (prepared.width, prepared.height) == (512, 600)


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_output_is_scale_times_the_input(detector: MtcnnDetector, grace_bytes: bytes, scale: int) -> None:
    result = enhance(grace_bytes, EnhanceParams(scale=scale), detector, IdentityRestorer(), LanczosUpscaler())

    assert (result.width, result.height) == (512 * scale, 600 * scale)
    assert _decode(result.jpeg).shape == (600 * scale, 512 * scale, 3)
    assert result.faces == 1
    assert set(result.timings) == {"decode", "detect", "align", "restore", "paste", "upscale", "encode"}


def test_exif_rotated_input_is_processed_upright(detector: MtcnnDetector, grace: np.ndarray) -> None:
    stored = np.ascontiguousarray(np.rot90(grace))  # as a camera held sideways would store it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = _encode(stored, "JPEG", quality=95, exif=exif.tobytes())

    prepared = prepare(data, EnhanceParams(scale=1), detector)

    assert prepared.image.shape == grace.shape
    assert _psnr(prepared.image, grace) > 30
    assert prepared.face_count == 1
    left_eye, right_eye, _nose, left_mouth, _right_mouth = prepared.landmarks[0]
    assert left_eye[1] < left_mouth[1]
    assert left_eye[0] < right_eye[0]


def test_no_face_is_still_upscaled_with_a_note(detector: MtcnnDetector) -> None:
    restorer = IdentityRestorer()
    data = _encode(skimage.data.coffee())

    result = enhance(
        data, EnhanceParams(scale=2, quality_level="fast"), detector, restorer, LanczosUpscaler()
    )

    assert result.faces == 0
    assert NO_FACE_NOTE in result.notes
    assert (result.width, result.height) == (1200, 800)
    assert restorer.calls == []


def test_faces_batched_across_photos_match_one_by_one(
    detector: MtcnnDetector, astronaut: np.ndarray, grace_bytes: bytes
) -> None:
    params = EnhanceParams(scale=2, quality_level="medium")
    inputs = [_encode(astronaut), grace_bytes]
    prepared: list[PreparedPhoto] = [prepare(data, params, detector) for data in inputs]
    restorer = MirrorRestorer()

    batch = restorer.restore(np.concatenate([p.faces for p in prepared]))
    counts = np.cumsum([0] + [p.face_count for p in prepared])
    batched = [
        finish(p, batch[a:b], LanczosUpscaler())
        for p, a, b in zip(prepared, counts, counts[1:], strict=False)
    ]
    single = [enhance(data, params, detector, MirrorRestorer(), LanczosUpscaler()) for data in inputs]

    assert restorer.calls == [2]
    for one, other in zip(batched, single, strict=True):
        assert one.jpeg == other.jpeg
        assert one.faces == other.faces == 1


def test_restorer_is_called_in_batches_of_max_batch(detector: MtcnnDetector, astronaut: np.ndarray) -> None:
    twins = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)  # two faces
    restorer = IdentityRestorer()
    restorer.max_batch = 1

    result = enhance(_encode(twins), EnhanceParams(scale=1), detector, restorer, LanczosUpscaler())

    assert result.faces == 2
    assert restorer.calls == [1, 1]


def test_fast_level_ignores_small_faces(detector: MtcnnDetector, grace: np.ndarray) -> None:
    small = np.asarray(Image.fromarray(grace).resize((128, 150), Image.Resampling.LANCZOS))  # face ~40 px
    data = _encode(small)

    assert prepare(data, EnhanceParams(quality_level="medium"), detector).face_count == 1
    assert prepare(data, EnhanceParams(quality_level="fast"), detector).face_count == 0


def test_restored_faces_of_the_wrong_shape_are_refused(detector: MtcnnDetector, grace_bytes: bytes) -> None:
    prepared = prepare(grace_bytes, EnhanceParams(), detector)

    with pytest.raises(ValueError, match="shape"):
        finish(prepared, np.zeros((2, 3, 512, 512), np.float32), LanczosUpscaler())


def test_a_face_model_of_another_size_is_refused(detector: MtcnnDetector, grace_bytes: bytes) -> None:
    restorer = IdentityRestorer()
    restorer.input_size = 256

    with pytest.raises(ValueError, match="256"):
        enhance(grace_bytes, EnhanceParams(), detector, restorer, LanczosUpscaler())


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"%PDF-1.7\n...", "unsupported_format"),
        (b"hello, this is not a photo", "unsupported_format"),
        (b"", "empty"),
    ],
)
def test_non_images_are_rejected(detector: MtcnnDetector, data: bytes, code: str) -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare(data, EnhanceParams(), detector)

    assert caught.value.code == code
    assert caught.value.message


def test_a_truncated_jpeg_is_rejected_as_corrupt(detector: MtcnnDetector, grace_bytes: bytes) -> None:
    with pytest.raises(ImageRejected) as caught:
        prepare(grace_bytes[: len(grace_bytes) // 2], EnhanceParams(), detector)

    assert caught.value.code == "corrupt"


# --- params ---------------------------------------------------------------------------------------


def test_params_defaults_are_the_old_services() -> None:
    params = EnhanceParams()

    assert (params.scale, params.tile_size, params.quality_level) == (2, 400, "high")
    assert params.level.detect_side == 2048
    assert EnhanceParams(quality_level="fast").level.min_face == 48


@pytest.mark.parametrize(
    "fields",
    [
        {"scale": 0},
        {"scale": 5},
        {"scale": 2.5},
        {"tile_size": 127},
        {"tile_size": 1025},
        {"quality_level": "ultra"},
        {"colour": "vivid"},
    ],
)
def test_params_out_of_range_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EnhanceParams.model_validate(fields)


def test_params_are_frozen() -> None:
    params = EnhanceParams()

    with pytest.raises(ValidationError):
        params.scale = 3  # type: ignore[misc]


# --- upscalers ------------------------------------------------------------------------------------


def _tiny_upscaler_model(path: Path) -> Path:
    """x2: bilinear Resize then a fixed 3x3 smoothing conv per channel (context across tiles)."""
    kernel = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float32) / 16
    weights = np.zeros((3, 1, 3, 3), dtype=np.float32)
    weights[:, 0] = kernel
    graph = helper.make_graph(
        [
            helper.make_node("Resize", ["x", "", "scales"], ["up"], mode="linear"),
            helper.make_node("Conv", ["up", "w"], ["y"], pads=[1, 1, 1, 1], group=3),
        ],
        "tiny_x2",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, None, None])],
        initializer=[
            helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2]),
            helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.ravel().tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_tiled_onnx_upscaler_matches_untiled_away_from_seams(tmp_path: Path, astronaut: np.ndarray) -> None:
    model = _tiny_upscaler_model(tmp_path / "tiny_x2.onnx")
    image = astronaut[:200, :300]
    whole = TiledOnnxUpscaler(model, tile_size=512, overlap=0).upscale_native(image)
    tiled_upscaler = TiledOnnxUpscaler(model, tile_size=96, overlap=16)

    tiled = tiled_upscaler.upscale_native(image)

    assert tiled_upscaler.model_scale == 2
    assert tiled.shape == whole.shape == (400, 600, 3)
    interior = np.zeros(tiled.shape[:2], bool)
    interior[8:24, 8:24] = True  # only the first tile covers it
    np.testing.assert_allclose(tiled[interior], whole[interior], atol=1e-5)
    assert np.abs(tiled - whole).max() < 2 / 255  # seams blended: under two grey levels anywhere
    assert tiled_upscaler.upscale(image, 4).shape == (800, 1200, 3)
    assert tiled_upscaler.upscale(image, 1).shape == (200, 300, 3)


def test_tiled_upscaler_is_used_only_at_high_quality(
    tmp_path: Path, detector: MtcnnDetector, grace_bytes: bytes
) -> None:
    upscaler = TiledOnnxUpscaler(_tiny_upscaler_model(tmp_path / "tiny_x2.onnx"), tile_size=128)

    high = enhance(grace_bytes, EnhanceParams(tile_size=128), detector, IdentityRestorer(), upscaler)
    fast = enhance(grace_bytes, EnhanceParams(quality_level="fast"), detector, IdentityRestorer(), upscaler)

    assert (high.width, high.height) == (fast.width, fast.height) == (1024, 1200)
    assert high.notes == []
    assert fast.notes == []
    assert high.jpeg != fast.jpeg


# --- SCRFD (a stand-in graph with SCRFD's outputs) ------------------------------------------------


def _scrfd_stand_in(path: Path, size: int) -> Path:
    """Ignores its input; one anchor at stride 8, cell (row 2, col 3), scores 0.9, with a box and
    landmarks around it; the other strides score 0."""
    nodes, outputs = [], []
    tensors: dict[str, np.ndarray] = {}
    for stride in (8, 16, 32):
        cells = (size // stride) ** 2 * 2
        score = np.zeros((cells, 1), np.float32)
        bbox = np.zeros((cells, 4), np.float32)
        kps = np.zeros((cells, 10), np.float32)
        if stride == 8:
            index = (2 * (size // 8) + 3) * 2  # row 2, col 3, first anchor
            score[index] = 0.9
            bbox[index] = [1, 1, 1, 2]  # xstride: 8 px left/up/right, 16 px down
            kps[index] = [-0.5, -0.5, 0.5, -0.5, 0, 0, -0.4, 0.8, 0.4, 0.8]
        tensors.update({f"score_{stride}": score, f"bbox_{stride}": bbox, f"kps_{stride}": kps})
    for kind in ("score", "bbox", "kps"):
        for stride in (8, 16, 32):
            name = f"{kind}_{stride}"
            value = tensors[name]
            nodes.append(
                helper.make_node(
                    "Constant",
                    [],
                    [name],
                    value=helper.make_tensor(
                        name + "_v", TensorProto.FLOAT, value.shape, value.ravel().tolist()
                    ),
                )
            )
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    nodes.append(helper.make_node("Identity", ["input.1"], ["unused"]))
    graph = helper.make_graph(
        nodes,
        "scrfd_stand_in",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, size, size])],
        outputs,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_scrfd_decodes_boxes_and_landmarks(tmp_path: Path) -> None:
    model = _scrfd_stand_in(tmp_path / "scrfd.onnx", 64)
    detector = ScrfdDetector(model, input_size=64)
    image = np.zeros((128, 100, 3), np.uint8)  # ratio 64 / 128 = 0.5

    faces = detector.detect(image)

    assert len(faces) == 1
    face: Face = faces[0]
    assert face.score == pytest.approx(0.9)
    # centre (24, 16) in the 64 px input → (48, 32) here; box 8/8/8/16 px → 16/16/16/32
    assert face.box == pytest.approx((32, 16, 64, 64))
    assert face.landmarks[0] == pytest.approx((40, 24))
    assert face.landmarks[2] == pytest.approx((48, 32))
