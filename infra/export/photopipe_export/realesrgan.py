"""Real-ESRGAN's generator (RRDBNet, the x4plus configuration) in PyTorch and its ONNX export, for the neural
background upscaler (`photopipe.enhance.upscale.TiledOnnxUpscaler`).

The architecture is ESRGAN's residual-in-residual dense network as xinntao/Real-ESRGAN uses it (the
`RRDBNet` of basicsr): a 3x3 stem, `num_block` RRDB blocks (three dense blocks each, residuals scaled by
0.2) and a 3x3 trunk conv added back to the stem, then two x2 nearest-neighbour upsamplings each followed by
a 3x3 conv and LeakyReLU(0.2), a 3x3 conv with LeakyReLU and the 3x3 output conv. Parameter names are
basicsr's (`conv_first`, `body.{i}.rdb{1,2,3}.conv{1..5}`, `conv_body`, `conv_up1`, `conv_up2`, `conv_hr`,
`conv_last`), so the `params_ema` of the official `RealESRGAN_x4plus.pth` (xinntao/Real-ESRGAN release
v0.1.0) loads with `strict=True`. Only the x4 model (no pixel-unshuffle stem) is supported.

ONNX interface (what `TiledOnnxUpscaler` expects): input `input`, float32 Nx3xHxW RGB in [0, 1]; output
`output`, float32 Nx3x(4H)x(4W), unclipped; batch, height and width dynamic. The fp16 file computes in
float16 with float32 input and output (keep_io_types), as Real-ESRGAN's own GPU inference runs half.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from photopipe.enhance.manifest import Manifest

_LEAK = 0.2
SCALE = 4
FP32_FILE = "realesrgan_x4plus_fp32.onnx"
FP16_FILE = "realesrgan_x4plus_fp16.onnx"
MODEL_NAME = "RealESRGAN_x4plus"
WEIGHTS_URL = "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.0/RealESRGAN_x4plus.pth"


@dataclass(frozen=True)
class RealEsrganConfig:
    num_feat: int = 64
    num_block: int = 23
    num_grow_ch: int = 32
    num_in_ch: int = 3
    num_out_ch: int = 3
    scale: int = SCALE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


X4PLUS = RealEsrganConfig()
"""RealESRGAN_x4plus: 64 features, 23 RRDB blocks, growth 32 (16.7 M parameters)."""

REDUCED = RealEsrganConfig(num_feat=16, num_block=2, num_grow_ch=8)
"""A small model of the same architecture for tests."""


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        x1 = F.leaky_relu(self.conv1(x), _LEAK)
        x2 = F.leaky_relu(self.conv2(torch.cat((x, x1), 1)), _LEAK)
        x3 = F.leaky_relu(self.conv3(torch.cat((x, x1, x2), 1)), _LEAK)
        x4 = F.leaky_relu(self.conv4(torch.cat((x, x1, x2, x3), 1)), _LEAK)
        return self.conv5(torch.cat((x, x1, x2, x3, x4), 1)) * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: Tensor) -> Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """x4: Nx3xHxW in [0, 1] → Nx3x4Hx4W."""

    def __init__(self, config: RealEsrganConfig = X4PLUS) -> None:
        super().__init__()
        if config.scale != SCALE:
            raise ValueError(f"only the x4 RRDBNet is supported, not x{config.scale}")
        self.config = config
        f = config.num_feat
        self.conv_first = nn.Conv2d(config.num_in_ch, f, 3, 1, 1)
        self.body = nn.Sequential(*(RRDB(f, config.num_grow_ch) for _ in range(config.num_block)))
        self.conv_body = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_hr = nn.Conv2d(f, f, 3, 1, 1)
        self.conv_last = nn.Conv2d(f, config.num_out_ch, 3, 1, 1)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        feat = F.leaky_relu(self.conv_up1(F.interpolate(feat, scale_factor=2.0, mode="nearest")), _LEAK)
        feat = F.leaky_relu(self.conv_up2(F.interpolate(feat, scale_factor=2.0, mode="nearest")), _LEAK)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), _LEAK))


def seeded_realesrgan(config: RealEsrganConfig = X4PLUS, seed: int = 0) -> RRDBNet:
    """The architecture with reproducible random weights, the dense blocks' convs scaled by 0.1 as
    ESRGAN initialises them (so 23 stacked blocks stay stable)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = RRDBNet(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ResidualDenseBlock):
                for conv in (module.conv1, module.conv2, module.conv3, module.conv4, module.conv5):
                    conv.weight.mul_(0.1)
                    assert conv.bias is not None
                    conv.bias.zero_()
    return model.eval()


def load_realesrgan(state_dict: dict[str, Tensor], config: RealEsrganConfig = X4PLUS) -> RRDBNet:
    """A model with these weights, matched strictly (a missing or unexpected key raises)."""
    model = RRDBNet(config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def export_realesrgan(
    weights: Path | None,
    out_dir: Path,
    *,
    config: RealEsrganConfig = X4PLUS,
    seed: int = 0,
    fp16: bool = True,
    trace_size: int = 64,
) -> Manifest:
    """Export Real-ESRGAN to `out_dir` (`realesrgan_x4plus_fp32.onnx`, `..._fp16.onnx`, `manifest.json`).

    `weights`: the official `RealESRGAN_x4plus.pth` (its `params_ema`, loaded strictly), or None for the
    architecture with random weights seeded by `seed` (tests)."""
    from photopipe_export import export as gfpgan_export

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if weights is not None:
        state_dict, source = gfpgan_export.load_weights(Path(weights))
        model = load_realesrgan(state_dict, config)
    else:
        model = seeded_realesrgan(config, seed)
        source = {"random_seed": seed, "description": f"random seed {seed}"}

    fp32_path = out_dir / FP32_FILE
    gfpgan_export.export_onnx_fp32(
        model,
        fp32_path,
        input_size=trace_size,
        dynamic_axes={0: "batch", 2: "height", 3: "width"},
        output_axes={0: "batch", 2: "height_x4", 3: "width_x4"},
    )
    gfpgan_export.check_cuda_kernels(fp32_path)
    files = [gfpgan_export._model_file(fp32_path, "fp32")]
    notes = [
        "Input `input` Nx3xHxW RGB in [0, 1] (float32); output `output` Nx3x4Hx4W, unclipped; "
        "batch, height and width dynamic.",
        gfpgan_export.CUDA_NOTE,
    ]
    if fp16:
        fp16_path = out_dir / FP16_FILE
        gfpgan_export.convert_fp16(fp32_path, fp16_path, keep_io_types=True, fp32_nodes=[])
        gfpgan_export.check_cuda_kernels(fp16_path)
        files.append(gfpgan_export._model_file(fp16_path, "fp16"))
        notes.append("The fp16 file computes in float16 with float32 input and output (keep_io_types).")
    else:
        (out_dir / FP16_FILE).unlink(missing_ok=True)
    manifest = Manifest(
        model=MODEL_NAME,
        files=files,
        opset=gfpgan_export.OPSET,
        source_weights=source,
        config=config.to_dict(),
        exporter=gfpgan_export.exporter_versions(),
        notes=notes,
    )
    manifest.write(out_dir)
    return manifest
