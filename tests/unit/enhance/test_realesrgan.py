"""Real-ESRGAN as the background upscaler: our RRDBNet (x4plus architecture) loads official-format weights
strictly, exports to ONNX (fp32, fp16) that matches PyTorch with dynamic height and width, runs whole on
CUDA, is pinned by sha256 in its manifest, and a setting switches the worker's background upscaler to it.

Seeded random weights of the real architecture (a reduced configuration: 16 features, 2 blocks)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from photopipe.enhance.manifest import read_manifest, sha256_file
from photopipe.enhance.pipeline import NO_FACE_NOTE, PreparedPhoto, finish
from photopipe.enhance.upscale import LanczosUpscaler, TiledOnnxUpscaler, Upscaler
from photopipe.errors import ConfigurationError
from photopipe.models import EnhanceParams
from photopipe.settings import WorkerSettings
from photopipe.wiring import background_upscaler
from photopipe_cli import main as cli
from photopipe_export.kernels import load_table, uncovered_nodes
from photopipe_export.realesrgan import (
    FP16_FILE,
    FP32_FILE,
    MODEL_NAME,
    REDUCED,
    X4PLUS,
    RRDBNet,
    export_realesrgan,
    load_realesrgan,
    seeded_realesrgan,
)

SEED = 2


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("realesrgan-reduced")
    export_realesrgan(None, out, config=REDUCED, seed=SEED)
    return out


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_x4plus_has_the_official_parameter_names_and_count() -> None:
    names = set(RRDBNet(X4PLUS).state_dict())
    assert sum(p.numel() for p in RRDBNet(X4PLUS).parameters()) == 16_697_987  # RealESRGAN_x4plus
    for key in ("conv_first.weight", "body.22.rdb3.conv5.bias", "conv_body.weight", "conv_up1.weight"):
        assert key in names
    assert {"conv_up2.bias", "conv_hr.weight", "conv_last.weight"} <= names
    assert not any(k.startswith("body.23.") for k in names)


def test_official_format_weights_load_strictly(tmp_path: Path) -> None:
    # GIVEN an official-format .pth (the weights under params_ema)
    reference = seeded_realesrgan(REDUCED, SEED)
    path = tmp_path / "RealESRGAN_x4plus-like.pth"
    torch.save({"params_ema": reference.state_dict()}, path)

    # WHEN it is exported from that file
    manifest = export_realesrgan(path, tmp_path / "out", config=REDUCED, fp16=False)

    # THEN the weights and their provenance are recorded, and a missing or extra key is refused
    assert manifest.source_weights == {"file": path.name, "sha256": sha256_file(path)}
    state = reference.state_dict()
    with pytest.raises(RuntimeError, match="Missing key"):
        load_realesrgan({k: v for k, v in state.items() if k != "conv_hr.bias"}, REDUCED)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_realesrgan({**state, "conv_extra.weight": torch.zeros(1)}, REDUCED)


def test_onnx_matches_pytorch_at_any_size(model_dir: Path) -> None:
    model = seeded_realesrgan(REDUCED, SEED)
    fp32 = ort.InferenceSession(str(model_dir / FP32_FILE), providers=["CPUExecutionProvider"])
    fp16 = ort.InferenceSession(str(model_dir / FP16_FILE), providers=["CPUExecutionProvider"])
    assert fp16.get_inputs()[0].type == "tensor(float)"  # keep_io_types: float32 in and out
    for h, w in ((24, 40), (33, 17)):
        x = (_image(h, w, seed=h).astype(np.float32) / 255).transpose(2, 0, 1)[None].copy()
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        out32 = fp32.run(None, {"input": x})[0]
        out16 = fp16.run(None, {"input": x})[0]
        assert out32.shape == (1, 3, 4 * h, 4 * w)
        assert float(np.abs(out32 - expected).max()) <= 1e-4
        assert np.isfinite(out16).all()
        assert float(np.abs(out16 - expected).max()) <= 1e-2


def test_every_node_has_a_cuda_kernel_and_the_manifest_pins_the_files(model_dir: Path) -> None:
    table = load_table()
    manifest = read_manifest(model_dir)
    assert manifest.model == MODEL_NAME
    assert manifest.config["scale"] == 4
    for entry in manifest.files:
        assert uncovered_nodes(onnx.load(str(model_dir / entry.path)), table) == []
        assert entry.sha256 == sha256_file(model_dir / entry.path)
        assert entry.inputs[0].shape == ["batch", 3, "height", "width"]


def test_the_tiled_upscaler_loads_the_pinned_model(model_dir: Path, tmp_path: Path) -> None:
    upscaler = TiledOnnxUpscaler.from_model_dir(model_dir, tile_size=32, overlap=4)
    assert upscaler.model_scale == 4
    assert upscaler.model == MODEL_NAME
    assert upscaler.precision == "fp32"  # on the CPU
    assert upscaler.upscale(_image(40, 50), 2).shape == (80, 100, 3)

    # a file that no longer matches its manifest is refused before it is loaded
    copy = tmp_path / "tampered"
    copy.mkdir()
    for item in model_dir.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    data = bytearray((copy / FP32_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / FP32_FILE).write_bytes(bytes(data))
    with pytest.raises(ConfigurationError, match="does not match the manifest"):
        TiledOnnxUpscaler.from_model_dir(copy)
    with pytest.raises(ConfigurationError, match="--model realesrgan"):
        TiledOnnxUpscaler.from_model_dir(tmp_path / "nothing-here")


def _settings(**extra: str) -> WorkerSettings:
    return WorkerSettings.from_env(
        {
            "MEDIA_BUCKET": "m",
            "CREDITS_TABLE": "c",
            "JOBS_TABLE": "j",
            "WORKERS_TABLE": "w",
            "GPU_JOBS_QUEUE_URL": "q",
            "PHOTOPIPE_MODEL_DIR": "/unused",
            **extra,
        }
    )


def test_a_setting_switches_the_background_upscaler_to_real_esrgan(model_dir: Path) -> None:
    # GIVEN the worker's settings with and without the upscaler model
    assert isinstance(background_upscaler(_settings()), LanczosUpscaler)
    upscaler = background_upscaler(_settings(PHOTOPIPE_UPSCALER_MODEL_DIR=str(model_dir)))
    assert isinstance(upscaler, TiledOnnxUpscaler)

    # WHEN a photo is finished at quality high (Real-ESRGAN) and fast (always Lanczos)
    image = _image(30, 40, seed=9)

    def finished(level: str, chosen: Upscaler = upscaler) -> tuple[bytes, list[str]]:
        prepared = PreparedPhoto(
            image=image,
            params=EnhanceParams(quality_level=level, tile_size=128),
            faces=np.zeros((0, 3, 512, 512), np.float32),
            affines=np.zeros((0, 2, 3)),
            landmarks=np.zeros((0, 5, 2), np.float32),
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            timings={},
            notes=(NO_FACE_NOTE,),
        )
        result = finish(prepared, prepared.faces, chosen)
        assert (result.width, result.height) == (80, 60)
        return result.jpeg, result.notes

    high, high_notes = finished("high")
    fast, _ = finished("fast")

    # THEN the high-quality background came from the model, not from Lanczos (which says so when it is)
    assert high != fast
    assert not any("Lanczos" in note for note in high_notes)
    _, lanczos_notes = finished("high", LanczosUpscaler())
    assert any("upscaled with Lanczos" in note for note in lanczos_notes)


def test_the_cli_exports_real_esrgan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "esrgan"
    assert (
        cli.main(["models", "export", "--model", "realesrgan", "--reduced", "--no-fp16", "--out", str(out)])
        == 0
    )
    assert read_manifest(out).model == MODEL_NAME
    assert FP32_FILE in capsys.readouterr().out
    assert cli.main(["models", "export", "--model", "realesrgan", "--out", str(tmp_path / "x")]) == 2
    assert "RealESRGAN_x4plus.pth" in capsys.readouterr().err
