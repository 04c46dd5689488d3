"""GFPGANv1Clean (the GFPGAN v1.3/v1.4 architecture) in PyTorch, written for ONNX export.

A U-Net encoder turns the degraded face into one style code per decoder layer and, at each resolution, a
pair of SFT maps (scale, shift); a StyleGAN2 decoder with those SFT maps draws the restored face.

Parameter and buffer names are the official TencentARC ones (`gfpgan/archs/gfpganv1_clean_arch.py`), so
the `params_ema` state dict of `GFPGANv1.3.pth` / `GFPGANv1.4.pth` loads with `strict=True`, including
the decoder's registered noise buffers (`stylegan_decoder.noises.noise{i}`) and the style MLP and
intermediate `toRGB` layers that inference does not use.

Differences from the official module, all numerically equivalent (checked by the tests):

- Noise is always the checkpoint's stored noise (the official `randomize_noise=False`): the output is
  deterministic.
- The modulated convolution does not fold the batch into conv groups (which cannot be exported with a
  dynamic batch). It scales the activations by the style, convolves with the shared weight and multiplies
  the output by the demodulation factor `rsqrt(style² @ W²ᵀ + eps)`, `W²` being the weight squared and
  summed over the kernel.
- Demodulation is invariant to scaling the style per sample and the weight per output channel, so (as
  StyleGAN2-ADA does for fp16) the style is divided by its largest magnitude and the folded weight by
  `sqrt(fan_in) * max|W[o]|` before the convolution: its output stays below `sqrt(fan_in) * max|x|` whatever
  the checkpoint's values, which keeps an fp16 graph from overflowing. The effective `eps` changes by those
  factors; the difference is far below fp32 rounding for any style the mapping produces.
- The constant input is not repeated over the batch: the first modulated convolution's `x * style`
  broadcasts it, so the graph has no shape arithmetic (no `Shape`/`Expand`); the latent reshape has a
  constant target shape. Nothing in the exported graph depends on the batch size except its first axis.
- The encoder's x0.5 bilinear downsampling (half-pixel, no antialias) is a 2x2 average pool, which it
  equals exactly.
- `fold_constants()` precomputes every weight-only quantity (the conv weight without its leading axis,
  `W²ᵀ`, the noise times its strength) as non-persistent buffers, so a traced graph holds them as
  initializers and runs no weight-only node at inference.
- `forward(x)` returns the image only; `forward_with_rgbs(x)` returns `(image, out_rgbs)` like the
  official `forward(x, return_rgb=True)`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

_LEAK = 0.2


@dataclass(frozen=True)
class GfpganConfig:
    """The constructor arguments of GFPGANv1Clean. The defaults are the v1.3/v1.4 ones."""

    out_size: int = 512
    num_style_feat: int = 512
    channel_multiplier: int = 2
    num_mlp: int = 8
    narrow: float = 1.0
    sft_half: bool = True
    different_w: bool = True
    input_is_latent: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = GfpganConfig()
"""GFPGAN v1.3/v1.4: 512 px, 86.4 M parameters."""

REDUCED = GfpganConfig(out_size=64, num_style_feat=64, num_mlp=2, narrow=0.125)
"""A small model of the same architecture (64 px, narrow channels) for tests that must take seconds."""


def _channels(multiplier: int, narrow: float) -> dict[int, int]:
    return {
        4: int(512 * narrow),
        8: int(512 * narrow),
        16: int(512 * narrow),
        32: int(512 * narrow),
        64: int(256 * multiplier * narrow),
        128: int(128 * multiplier * narrow),
        256: int(64 * multiplier * narrow),
        512: int(32 * multiplier * narrow),
        1024: int(16 * multiplier * narrow),
    }


def _upsample2(x: Tensor) -> Tensor:
    """x2 bilinear (half-pixel): one ONNX `Resize` with constant scales."""
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def _downsample2(x: Tensor) -> Tensor:
    """x0.5 bilinear (half-pixel, no antialias) samples halfway between each pair of pixels: a 2x2 mean."""
    return F.avg_pool2d(x, kernel_size=2, stride=2)


# ------------------------------------------------------------------------------------ StyleGAN2 parts


class NormStyleCode(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ModulatedConv2d(nn.Module):
    """StyleGAN2's modulated convolution in its batch-independent form (no bias).

    `weight` keeps the official shape (1, out, in, k, k). Output:
    `conv(x * s, W) * rsqrt((s²) @ W²ᵀ + eps)` per sample, with `s = modulation(style)`; without
    demodulation just `conv(x * s, W)`.
    """

    folded_weight: Tensor | None
    folded_weight_sq_t: Tensor | None

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        num_style_feat: int,
        *,
        demodulate: bool = True,
        upsample: bool = False,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.eps = eps
        self.padding = kernel_size // 2
        self.modulation = nn.Linear(num_style_feat, in_channels, bias=True)
        self.weight = nn.Parameter(
            torch.randn(1, out_channels, in_channels, kernel_size, kernel_size)
            / math.sqrt(in_channels * kernel_size**2)
        )
        self.register_buffer("folded_weight", None, persistent=False)
        self.register_buffer("folded_weight_sq_t", None, persistent=False)

    def fold_constants(self) -> None:
        with torch.no_grad():
            w = self.weight[0]
            if self.demodulate:
                # demodulation cancels a per-output-channel scale: pre-normalise for fp16 (see the module doc)
                fan_in = w.shape[1] * w.shape[2] * w.shape[3]
                peak = w.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
                w = w / (math.sqrt(fan_in) * peak)
            self.folded_weight = w.detach().clone()
            self.folded_weight_sq_t = w.pow(2).sum(dim=(2, 3)).t().contiguous()  # (in, out)

    def unfold_constants(self) -> None:
        self.folded_weight = None
        self.folded_weight_sq_t = None

    def forward(self, x: Tensor, style: Tensor) -> Tensor:
        s = self.modulation(style)  # (b, in)
        w = self.weight[0] if self.folded_weight is None else self.folded_weight
        if self.upsample:
            x = _upsample2(x)
        if self.demodulate:  # demodulation cancels a per-sample scale of the style: bound it for fp16
            s = s / s.abs().amax(dim=1, keepdim=True)
        out = F.conv2d(x * s[:, :, None, None], w, padding=self.padding)
        if self.demodulate:
            w_sq_t = (
                self.weight[0].pow(2).sum(dim=(2, 3)).t()
                if self.folded_weight_sq_t is None
                else self.folded_weight_sq_t
            )
            demod = torch.rsqrt(torch.matmul(s * s, w_sq_t) + self.eps)  # (b, out)
            out = out * demod[:, :, None, None]
        return out


class StyleConv(nn.Module):
    folded_noise: Tensor | None

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, num_style_feat: int, *, upsample: bool
    ) -> None:
        super().__init__()
        self.modulated_conv = ModulatedConv2d(
            in_channels, out_channels, kernel_size, num_style_feat, demodulate=True, upsample=upsample
        )
        self.weight = nn.Parameter(torch.zeros(1))  # noise strength
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1))
        self.register_buffer("folded_noise", None, persistent=False)

    def fold_constants(self, noise: Tensor) -> None:
        with torch.no_grad():
            self.folded_noise = (self.weight * noise).detach().clone()
        self.modulated_conv.fold_constants()

    def unfold_constants(self) -> None:
        self.folded_noise = None
        self.modulated_conv.unfold_constants()

    def forward(self, x: Tensor, style: Tensor, noise: Tensor) -> Tensor:
        out = self.modulated_conv(x, style) * 2**0.5
        out = out + (self.weight * noise if self.folded_noise is None else self.folded_noise)
        out = out + self.bias
        return F.leaky_relu(out, _LEAK)


class ToRGB(nn.Module):
    def __init__(self, in_channels: int, num_style_feat: int, *, upsample: bool = True) -> None:
        super().__init__()
        self.upsample = upsample
        self.modulated_conv = ModulatedConv2d(in_channels, 3, 1, num_style_feat, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, style: Tensor, skip: Tensor | None = None) -> Tensor:
        out = self.modulated_conv(x, style) + self.bias
        if skip is not None:
            out = out + (_upsample2(skip) if self.upsample else skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, num_channel: int, size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, num_channel, size, size))

    def forward(self, batch_like: Tensor) -> Tensor:
        """The constant, batch axis 1: the first modulated convolution broadcasts it over `batch_like`'s
        batch (`x * style`), so no shape is computed from the input."""
        return self.weight


class StyleGAN2GeneratorCSFT(nn.Module):
    """StyleGAN2 decoder with SFT on (half of) the channels after the first conv of each resolution."""

    def __init__(
        self,
        out_size: int,
        num_style_feat: int,
        num_mlp: int,
        channel_multiplier: int,
        narrow: float,
        sft_half: bool,
    ) -> None:
        super().__init__()
        self.num_style_feat = num_style_feat
        self.sft_half = sft_half
        mlp: list[nn.Module] = [NormStyleCode()]
        for _ in range(num_mlp):  # unused with latent input, present in the checkpoints
            mlp += [nn.Linear(num_style_feat, num_style_feat, bias=True), nn.LeakyReLU(_LEAK)]
        self.style_mlp = nn.Sequential(*mlp)

        channels = _channels(channel_multiplier, narrow)
        self.channels = channels
        self.log_size = int(math.log2(out_size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.num_latent = self.log_size * 2 - 2

        self.constant_input = ConstantInput(channels[4], size=4)
        self.style_conv1 = StyleConv(channels[4], channels[4], 3, num_style_feat, upsample=False)
        self.to_rgb1 = ToRGB(channels[4], num_style_feat, upsample=False)

        self.noises = nn.Module()
        for layer in range(self.num_layers):
            resolution = 2 ** ((layer + 5) // 2)
            self.noises.register_buffer(f"noise{layer}", torch.randn(1, 1, resolution, resolution))

        self.style_convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        in_channels = channels[4]
        for i in range(3, self.log_size + 1):
            out_channels = channels[2**i]
            self.style_convs.append(StyleConv(in_channels, out_channels, 3, num_style_feat, upsample=True))
            self.style_convs.append(StyleConv(out_channels, out_channels, 3, num_style_feat, upsample=False))
            self.to_rgbs.append(ToRGB(out_channels, num_style_feat, upsample=True))
            in_channels = out_channels

    def noise(self, layer: int) -> Tensor:
        buffer = self.noises.get_buffer(f"noise{layer}")
        return buffer

    def _convs(self) -> list[StyleConv]:
        return [self.style_conv1, *(c for c in self.style_convs if isinstance(c, StyleConv))]

    def fold_constants(self) -> None:
        for layer, conv in enumerate(self._convs()):
            conv.fold_constants(self.noise(layer))
        for module in self.modules():
            if isinstance(module, ToRGB):
                module.modulated_conv.fold_constants()

    def unfold_constants(self) -> None:
        for module in self.modules():
            if isinstance(module, StyleConv | ModulatedConv2d):
                module.unfold_constants()

    def forward(self, latent: Tensor, conditions: list[Tensor]) -> Tensor:
        """`latent`: (b, num_latent, num_style_feat) (the encoder's `different_w` codes)."""
        out = self.constant_input(latent)
        out = self.style_conv1(out, latent[:, 0], self.noise(0))
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for k, to_rgb in enumerate(self.to_rgbs):
            conv1, conv2 = self.style_convs[2 * k], self.style_convs[2 * k + 1]
            assert isinstance(conv1, StyleConv)
            out = conv1(out, latent[:, i], self.noise(2 * k + 1))
            if i < len(conditions):
                scale, shift = conditions[i - 1], conditions[i]
                if self.sft_half:
                    half = conv1.modulated_conv.out_channels // 2  # a Python int: a constant split
                    same, sft = torch.split(out, half, dim=1)
                    out = torch.cat([same, sft * scale + shift], dim=1)
                else:
                    out = out * scale + shift
            out = conv2(out, latent[:, i + 1], self.noise(2 * k + 2))
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


# ------------------------------------------------------------------------------------------ U-Net


class ResBlock(nn.Module):
    """Residual block with x2 bilinear upsampling or x0.5 downsampling."""

    def __init__(self, in_channels: int, out_channels: int, mode: str) -> None:
        super().__init__()
        if mode not in ("down", "up"):
            raise ValueError(f"mode must be 'down' or 'up', not {mode!r}")
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.resample = _downsample2 if mode == "down" else _upsample2

    def forward(self, x: Tensor) -> Tensor:
        out = F.leaky_relu(self.conv1(x), _LEAK)
        out = F.leaky_relu(self.conv2(self.resample(out)), _LEAK)
        return out + self.skip(self.resample(x))


class GFPGANv1Clean(nn.Module):
    """GFPGAN v1.3/v1.4: `forward(x)` maps Nx3xSxS RGB in [-1, 1] to the restored faces (same shape)."""

    def __init__(self, config: GfpganConfig = FULL) -> None:
        super().__init__()
        if not config.input_is_latent or not config.different_w:
            raise ValueError("only the v1.3/v1.4 configuration (input_is_latent, different_w) is supported")
        self.config = config
        self.num_style_feat = config.num_style_feat
        self.log_size = int(math.log2(config.out_size))
        if 2**self.log_size != config.out_size or self.log_size < 3:
            raise ValueError(f"out_size must be a power of two >= 8, not {config.out_size}")
        unet = _channels(config.channel_multiplier, config.narrow * 0.5)

        self.conv_body_first = nn.Conv2d(3, unet[config.out_size], 1)
        self.conv_body_down = nn.ModuleList()
        in_channels = unet[config.out_size]
        for i in range(self.log_size, 2, -1):
            self.conv_body_down.append(ResBlock(in_channels, unet[2 ** (i - 1)], "down"))
            in_channels = unet[2 ** (i - 1)]
        self.final_conv = nn.Conv2d(in_channels, unet[4], 3, 1, 1)

        self.conv_body_up = nn.ModuleList()
        in_channels = unet[4]
        for i in range(3, self.log_size + 1):
            self.conv_body_up.append(ResBlock(in_channels, unet[2**i], "up"))
            in_channels = unet[2**i]
        self.toRGB = nn.ModuleList([nn.Conv2d(unet[2**i], 3, 1) for i in range(3, self.log_size + 1)])

        num_latent = self.log_size * 2 - 2
        self.final_linear = nn.Linear(unet[4] * 4 * 4, num_latent * config.num_style_feat)

        self.stylegan_decoder = StyleGAN2GeneratorCSFT(
            out_size=config.out_size,
            num_style_feat=config.num_style_feat,
            num_mlp=config.num_mlp,
            channel_multiplier=config.channel_multiplier,
            narrow=config.narrow,
            sft_half=config.sft_half,
        )

        self.condition_scale = nn.ModuleList()
        self.condition_shift = nn.ModuleList()
        for i in range(3, self.log_size + 1):
            channels = unet[2**i]
            sft_channels = channels if config.sft_half else channels * 2
            for branch in (self.condition_scale, self.condition_shift):
                branch.append(
                    nn.Sequential(
                        nn.Conv2d(channels, channels, 3, 1, 1),
                        nn.LeakyReLU(_LEAK),
                        nn.Conv2d(channels, sft_channels, 3, 1, 1),
                    )
                )

    def fold_constants(self) -> GFPGANv1Clean:
        """Precompute the weight-only tensors (call after loading weights, before export)."""
        self.stylegan_decoder.fold_constants()
        return self

    def unfold_constants(self) -> GFPGANv1Clean:
        self.stylegan_decoder.unfold_constants()
        return self

    def _run(self, x: Tensor, return_rgb: bool) -> tuple[Tensor, list[Tensor]]:
        conditions: list[Tensor] = []
        unet_skips: list[Tensor] = []
        out_rgbs: list[Tensor] = []
        feat = F.leaky_relu(self.conv_body_first(x), _LEAK)
        for down in self.conv_body_down:
            feat = down(feat)
            unet_skips.insert(0, feat)
        feat = F.leaky_relu(self.final_conv(feat), _LEAK)

        num_latent = self.stylegan_decoder.num_latent
        latent = self.final_linear(feat.flatten(1)).view(-1, num_latent, self.num_style_feat)

        for i, up in enumerate(self.conv_body_up):
            feat = up(feat + unet_skips[i])
            conditions.append(self.condition_scale[i](feat))
            conditions.append(self.condition_shift[i](feat))
            if return_rgb:
                out_rgbs.append(self.toRGB[i](feat))
        return self.stylegan_decoder(latent, conditions), out_rgbs

    def forward(self, x: Tensor) -> Tensor:
        image, _ = self._run(x, return_rgb=False)
        return image

    def forward_with_rgbs(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """The official `forward(x, return_rgb=True, randomize_noise=False)`: image and the U-Net's RGBs."""
        return self._run(x, return_rgb=True)


def seeded_model(config: GfpganConfig = FULL, seed: int = 0) -> GFPGANv1Clean:
    """The architecture with reproducible random weights, initialised like training starts (modulation
    bias 1) and with non-zero noise strengths so that the noise path is exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = GFPGANv1Clean(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, ModulatedConv2d):
                module.modulation.bias.fill_(1.0)
            if isinstance(module, StyleConv):
                module.weight.copy_(0.1 * torch.rand(1, generator=generator))
    return model.eval()


def extract_state_dict(checkpoint: Any) -> dict[str, Tensor]:
    """The weights in an official checkpoint (`params_ema`, else `params`) or a raw state dict."""
    if not isinstance(checkpoint, dict):
        raise ValueError(f"expected a state dict or a checkpoint dict, got {type(checkpoint).__name__}")
    for key in ("params_ema", "params"):
        if key in checkpoint and isinstance(checkpoint[key], dict):
            return dict(checkpoint[key])
    if all(isinstance(v, Tensor) for v in checkpoint.values()):
        return dict(checkpoint)
    raise ValueError("the checkpoint has neither 'params_ema' nor 'params' and is not a state dict")


def load_model(state_dict: dict[str, Tensor], config: GfpganConfig = FULL) -> GFPGANv1Clean:
    """A model with these weights, matched strictly (a missing or unexpected key raises)."""
    model = GFPGANv1Clean(config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()
