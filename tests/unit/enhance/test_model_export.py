"""GFPGAN: the project's architecture, strict loading of official-format weights, ONNX export and parity,
folded constants, the manifest, and the ONNX Runtime session on the CPU.

Weights are seeded random ones of the real architecture (tests never download weights); a reduced
configuration keeps most tests to seconds, one full-size (512 px, v1.4) test is marked slow.
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch.nn import functional as F

from photopipe.enhance.manifest import ManifestError, read_manifest, sha256_file
from photopipe.enhance.session import CPU, CUDA, TENSORRT, FaceRestorer, GfpganSession, choose_providers
from photopipe_cli import main as cli
from photopipe_export.arch import (
    FULL,
    REDUCED,
    GFPGANv1Clean,
    ModulatedConv2d,
    extract_state_dict,
    load_model,
    seeded_model,
)
from photopipe_export.export import FP16_FILE, FP32_FILE, export_gfpgan, load_weights, weight_only_nodes
from photopipe_export.kernels import load_table, signatures, uncovered_nodes, value_types
from tests.unit.enhance.conftest import REDUCED_SEED

SEED = 7


def faces(n: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 1.0, size=(n, 3, size, size)).astype(np.float32)


def torch_restore(model: GFPGANv1Clean, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def reduced_dir(reduced_gfpgan: Path) -> Path:
    assert SEED == REDUCED_SEED  # the shared export's seed
    return reduced_gfpgan


@pytest.fixture(scope="module")
def reduced_model() -> GFPGANv1Clean:
    return seeded_model(REDUCED, SEED)


# ------------------------------------------------------------------------------------ architecture


def stock_modulated_conv(conv: ModulatedConv2d, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
    """The official StyleGAN2 form: per-sample modulated weights, batch folded into conv groups."""
    b, c = x.shape[:2]
    s = conv.modulation(style).view(b, 1, c, 1, 1)
    weight = conv.weight * s
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + conv.eps).view(b, -1, 1, 1, 1)
    weight = weight.view(b * conv.out_channels, c, conv.kernel_size, conv.kernel_size)
    if conv.upsample:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    out = F.conv2d(x.reshape(1, -1, *x.shape[2:]), weight, padding=conv.padding, groups=b)
    return out.view(b, conv.out_channels, *out.shape[2:])


@pytest.mark.parametrize(
    ("demodulate", "upsample", "kernel"), [(True, False, 3), (True, True, 3), (False, False, 1)]
)
def test_modulated_conv_equals_the_stock_grouped_form(demodulate: bool, upsample: bool, kernel: int) -> None:
    torch.manual_seed(0)
    conv = ModulatedConv2d(8, 16, kernel, 32, demodulate=demodulate, upsample=upsample)
    x, style = torch.randn(3, 8, 8, 8), torch.randn(3, 32)
    with torch.no_grad():
        expected = stock_modulated_conv(conv, x, style)
        unfolded = conv(x, style)
        conv.fold_constants()
        folded = conv(x, style)
    assert torch.allclose(unfolded, expected, atol=1e-5)
    assert torch.allclose(folded, expected, atol=1e-5)


def test_downsample_is_the_official_bilinear_half() -> None:
    x = torch.randn(2, 4, 16, 16)
    official = F.interpolate(x, scale_factor=0.5, mode="bilinear", align_corners=False)
    assert torch.allclose(F.avg_pool2d(x, 2), official, atol=1e-6)


def test_full_config_has_the_v14_parameter_count() -> None:
    model = GFPGANv1Clean(FULL)
    assert sum(p.numel() for p in model.parameters()) == 86_444_252  # 86.4 M (FIELD-NOTES)
    assert len([k for k in model.state_dict() if k.startswith("stylegan_decoder.noises.noise")]) == 15


# ------------------------------------------------------------------------------------ strict loading


def test_official_format_checkpoint_loads_strictly(tmp_path: Path, reduced_model: GFPGANv1Clean) -> None:
    # GIVEN an official-format .pth: the weights under params_ema (and the stored noise buffers)
    path = tmp_path / "GFPGANv1.4-like.pth"
    torch.save({"params_ema": reduced_model.state_dict(), "params": {}}, path)
    # WHEN it is loaded into a fresh model with strict key matching
    state_dict, source = load_weights(path)
    model = load_model(state_dict, REDUCED)
    # THEN every tensor matches, the noise buffers included, and so does the output
    for key, value in reduced_model.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    x = faces(1, REDUCED.out_size)
    assert np.array_equal(torch_restore(model, x), torch_restore(reduced_model, x))
    assert source == {"file": path.name, "sha256": sha256_file(path)}


def test_checkpoint_forms_params_and_raw(reduced_model: GFPGANv1Clean) -> None:
    sd = reduced_model.state_dict()
    assert extract_state_dict({"params": sd}).keys() == sd.keys()
    assert extract_state_dict(dict(sd)).keys() == sd.keys()
    with pytest.raises(ValueError, match="params_ema"):
        extract_state_dict({"something": 1})


def test_missing_or_extra_key_is_refused(reduced_model: GFPGANv1Clean) -> None:
    sd = reduced_model.state_dict()
    missing = {k: v for k, v in sd.items() if k != "stylegan_decoder.noises.noise3"}
    with pytest.raises(RuntimeError, match=r"Missing key.*noise3"):
        load_model(missing, REDUCED)
    extra = {**sd, "stylegan_decoder.style_convs.0.modulated_conv.extra": torch.zeros(1)}
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_model(extra, REDUCED)


# ------------------------------------------------------------------------------------------ export


@pytest.mark.parametrize("batch", [1, 3])
def test_fp32_onnx_matches_pytorch(reduced_dir: Path, reduced_model: GFPGANv1Clean, batch: int) -> None:
    x = faces(batch, REDUCED.out_size, seed=batch)
    session = ort.InferenceSession(str(reduced_dir / FP32_FILE), providers=[CPU])
    onnx_out = session.run(["output"], {"input": x})[0]
    error = float(np.abs(onnx_out - torch_restore(reduced_model, x)).max())
    print(f"fp32 batch {batch}: max abs error {error:.2e}")
    assert onnx_out.shape == (batch, 3, REDUCED.out_size, REDUCED.out_size)
    assert error <= 1e-3


def test_fp16_onnx_is_close(reduced_dir: Path, reduced_model: GFPGANv1Clean) -> None:
    x = faces(2, REDUCED.out_size, seed=11)
    session = ort.InferenceSession(str(reduced_dir / FP16_FILE), providers=[CPU])
    assert session.get_inputs()[0].type == "tensor(float16)"  # keep_io_types=False: float16 IO
    out = session.run(["output"], {"input": x.astype(np.float16)})[0].astype(np.float32)
    error = float(np.abs(out - torch_restore(reduced_model, x)).max())
    print(f"fp16: max abs error {error:.2e}")
    assert np.isfinite(out).all()
    assert error < 0.05


def test_no_weight_only_nodes_left(reduced_dir: Path) -> None:
    for name in (FP32_FILE, FP16_FILE):
        model = onnx.load(str(reduced_dir / name))
        onnx.checker.check_model(model)
        assert model.opset_import[0].version >= 17
        initializers = {i.name for i in model.graph.initializer}
        demodulation_on_weights = [
            n
            for n in model.graph.node
            if n.op_type in ("Pow", "ReduceSum", "Sqrt") and all(i in initializers for i in n.input if i)
        ]
        assert demodulation_on_weights == []
        assert weight_only_nodes(model) == []


def test_weight_only_detector_finds_unfolded_demodulation() -> None:
    # GIVEN a graph computing Pow/ReduceSum on a weight (what an unfolded export looks like)
    w = onnx.numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    two = onnx.numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [
        onnx.helper.make_node("Pow", ["w", "two"], ["w2"]),
        onnx.helper.make_node("ReduceSum", ["w2"], ["n"], keepdims=1),
        onnx.helper.make_node("Mul", ["x", "n"], ["y"]),
    ]
    graph = onnx.helper.make_graph(
        nodes,
        "g",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4, 3])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [4, 3])],
        [w, two],
    )
    found = weight_only_nodes(onnx.helper.make_model(graph))
    assert [n.op_type for n in found] == ["Pow", "ReduceSum"]


def test_manifest_describes_the_files(reduced_dir: Path) -> None:
    manifest = read_manifest(reduced_dir)
    raw = json.loads((reduced_dir / "manifest.json").read_text())
    assert raw["source_weights"]["description"] == f"random seed {SEED}"
    assert manifest.opset >= 17
    assert manifest.config == REDUCED.to_dict()
    assert {"torch", "onnx", "onnxruntime", "onnxconverter-common"} <= manifest.exporter.keys()
    for precision, dtype in (("fp32", "float32"), ("fp16", "float16")):
        entry = manifest.file(precision)
        path = reduced_dir / entry.path
        assert entry.sha256 == sha256_file(path)
        assert entry.bytes == path.stat().st_size
        size = REDUCED.out_size
        assert [(s.name, s.dtype, s.shape) for s in entry.inputs] == [
            ("input", dtype, ["batch", 3, size, size])
        ]
        assert [(s.name, s.dtype, s.shape) for s in entry.outputs] == [
            ("output", dtype, ["batch", 3, size, size])
        ]


# ----------------------------------------------------------------------------------------- session


def test_session_on_cpu_restores_in_batches(
    reduced_dir: Path, reduced_model: GFPGANv1Clean, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="photopipe.enhance.session"):
        session = GfpganSession(reduced_dir, max_batch=2)
    restorer: FaceRestorer = session
    assert session.provider == CPU
    assert session.precision == "fp32"
    assert restorer.input_size == REDUCED.out_size
    assert restorer.max_batch == 2
    assert any("provider=CPUExecutionProvider" in r.getMessage() for r in caplog.records)
    x = faces(5, REDUCED.out_size, seed=3)  # 3 chunks: 2 + 2 + 1
    out = restorer.restore(x)
    assert out.dtype == np.float32
    assert out.shape == x.shape
    assert float(np.abs(out - torch_restore(reduced_model, x)).max()) <= 1e-3
    assert restorer.restore(x[:0]).shape == (0, *x.shape[1:])
    with pytest.raises(ValueError, match="expected faces"):
        restorer.restore(x[:, :, :8])


def test_session_fp16_casts_input_and_output(reduced_dir: Path, reduced_model: GFPGANv1Clean) -> None:
    session = GfpganSession(reduced_dir, precision="fp16", max_batch=4)
    x = faces(2, REDUCED.out_size, seed=4)
    out = session.restore(x)
    assert out.dtype == np.float32
    assert float(np.abs(out - torch_restore(reduced_model, x)).max()) < 0.05


def test_tampered_model_file_is_refused(reduced_dir: Path, tmp_path: Path) -> None:
    # GIVEN a copy of the exported model whose fp32 file changed by one byte (same size)
    copy = tmp_path / "model"
    copy.mkdir()
    for item in reduced_dir.iterdir():
        (copy / item.name).write_bytes(item.read_bytes())
    data = bytearray((copy / FP32_FILE).read_bytes())
    data[-1] ^= 0xFF
    (copy / FP32_FILE).write_bytes(bytes(data))
    # THEN the session refuses it before loading
    with pytest.raises(ManifestError, match="does not match the manifest"):
        GfpganSession(copy)


def test_missing_manifest_names_the_export_command(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="photopipe models export"):
        GfpganSession(tmp_path)


def test_provider_order_is_tensorrt_cuda_cpu() -> None:
    assert choose_providers([CPU, CUDA, TENSORRT]) == [TENSORRT, CUDA, CPU]
    assert choose_providers([CPU, CUDA]) == [CUDA, CPU]
    assert choose_providers([CPU]) == [CPU]
    assert choose_providers([CPU, CUDA], [CUDA]) == [CUDA, CPU]
    with pytest.raises(ValueError, match="not available"):
        choose_providers([CPU], [CUDA])


# ------------------------------------------------------------------------------------------- CLI


def test_cli_exports_a_reduced_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli-model"
    assert cli.main(["models", "export", "--reduced", "--seed", "3", "--out", str(out), "--no-fp16"]) == 0
    manifest = read_manifest(out)
    assert manifest.precisions == ["fp32"]
    assert manifest.source_weights["random_seed"] == 3
    assert FP32_FILE in capsys.readouterr().out


def test_cli_without_weights_for_the_full_model_is_an_error(tmp_path: Path) -> None:
    assert cli.main(["models", "export", "--out", str(tmp_path)]) == 2


def test_cli_without_torch_names_the_export_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    assert cli.main(["models", "export", "--reduced", "--out", str(tmp_path)]) == 2
    assert "pip install 'photopipe[export]'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- full size


@pytest.mark.slow
def test_full_size_v14_export_matches_pytorch(tmp_path: Path, reduced_dir: Path) -> None:
    manifest = export_gfpgan(None, tmp_path, config=FULL, seed=SEED)
    entry = manifest.file("fp32")
    assert entry.inputs[0].shape == ["batch", 3, 512, 512]
    assert weight_only_nodes(onnx.load(str(tmp_path / FP32_FILE), load_external_data=False)) == []
    x = faces(1, 512, seed=1)
    session = ort.InferenceSession(str(tmp_path / FP32_FILE), providers=[CPU])
    onnx_out = session.run(["output"], {"input": x})[0]
    expected = torch_restore(seeded_model(FULL, SEED), x)
    error = float(np.abs(onnx_out - expected).max())
    print(f"full size fp32: max abs error {error:.2e}, {entry.bytes / 1e6:.0f} MB")
    assert math.isfinite(error)
    assert error <= 1e-3
    # every node of both full-size graphs has a CUDA kernel, and the reduced graphs the other tests check
    # have exactly the same node signatures (op, version, types)
    table = load_table()
    for name in (FP32_FILE, FP16_FILE):
        full = onnx.load(str(tmp_path / name))
        types = value_types(full)
        assert uncovered_nodes(full, table, types) == [], name
        assert signatures(full, types) == signatures(onnx.load(str(reduced_dir / name))), name
