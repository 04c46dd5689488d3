"""Export GFPGANv1Clean to ONNX: an fp32 file, an fp16 file and a sha256 manifest (needs torch).

Interface of both files (the one other GFPGAN ONNX tools use): input `input`, Nx3xSxS RGB in [-1, 1]
(S = 512 for v1.3/v1.4), output `output`, same shape and range; the batch axis `batch` is dynamic.
The fp32 file takes and returns float32. The fp16 file is the fp32 graph converted by
onnxconverter-common with `keep_io_types=False`: its input and output are **float16** too, so a caller
casts (`GfpganSession` does).

Weight-only computations are folded away: the model precomputes them (`fold_constants()`), the
TorchScript exporter folds constants, and ONNX Runtime's basic offline optimization (constant folding,
identity elimination; provider-independent) runs on the result. `weight_only_nodes()` must then be empty,
so every node runs on the GPU provider.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from photopipe.enhance.manifest import Manifest, ModelFile, TensorSpec, sha256_file
from photopipe_export.arch import FULL, GfpganConfig, extract_state_dict, load_model, seeded_model

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_AXIS = "batch"
FP32_FILE = "gfpgan_fp32.onnx"
FP16_FILE = "gfpgan_fp16.onnx"
FP16_NOTE = (
    "The fp16 file has float16 input and output (onnxconverter-common keep_io_types=False): "
    "cast float32 faces to float16 before running it and the result back."
)


def load_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The state dict in a `.pth` (`params_ema`, else `params`, else the file itself) and its provenance."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return extract_state_dict(checkpoint), {"file": Path(path).name, "sha256": sha256_file(Path(path))}


def weight_only_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes whose every input is a constant (an initializer, a `Constant` node's output, or computed from
    those only): work that should have been folded at export time."""
    constant = {init.name for init in model.graph.initializer}
    found: list[onnx.NodeProto] = []
    for node in model.graph.node:  # nodes are topologically sorted
        if node.op_type == "Constant":
            constant.update(node.output)
            continue
        inputs = [name for name in node.input if name]
        if inputs and all(name in constant for name in inputs):
            found.append(node)
            constant.update(node.output)
    return found


def _fold_with_onnxruntime(src: Path, dst: Path) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])


def _tensor_specs(values: Iterable[onnx.ValueInfoProto]) -> list[TensorSpec]:
    specs = []
    for value in values:
        tensor_type = value.type.tensor_type
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
        shape: list[int | str] = [
            d.dim_param if d.dim_param else int(d.dim_value) for d in tensor_type.shape.dim
        ]
        specs.append(TensorSpec(name=value.name, dtype=dtype, shape=shape))
    return specs


def _model_file(path: Path, precision: str) -> ModelFile:
    proto = onnx.load(str(path), load_external_data=False)
    return ModelFile(
        path=path.name,
        sha256=sha256_file(path),
        bytes=path.stat().st_size,
        precision=precision,
        inputs=_tensor_specs(proto.graph.input),
        outputs=_tensor_specs(proto.graph.output),
    )


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def export_onnx_fp32(model: torch.nn.Module, path: Path, *, input_size: int, opset: int = OPSET) -> None:
    """Trace `model` (constants already folded) to `path` and fold what is left with ONNX Runtime."""
    dummy = torch.zeros(1, 3, input_size, input_size)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.onnx"
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deprecated
            torch.onnx.export(
                model,
                (dummy,),
                str(raw),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: BATCH_AXIS}, OUTPUT_NAME: {0: BATCH_AXIS}},
                do_constant_folding=True,
            )
        _fold_with_onnxruntime(raw, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    leftover = weight_only_nodes(proto)
    if leftover:
        kinds = sorted({n.op_type for n in leftover})
        raise RuntimeError(f"{len(leftover)} weight-only nodes survived constant folding: {kinds}")


def convert_fp16(src: Path, dst: Path) -> None:
    from onnxconverter_common import float16

    proto = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)  # tiny values
        half = float16.convert_float_to_float16(proto, keep_io_types=False, disable_shape_infer=False)
    onnx.checker.check_model(half, full_check=True)
    onnx.save(half, str(dst))


def export_gfpgan(
    weights: Path | None,
    out_dir: Path,
    *,
    config: GfpganConfig = FULL,
    seed: int = 0,
    opset: int = OPSET,
    fp16: bool = True,
) -> Manifest:
    """Export GFPGAN to `out_dir` (`gfpgan_fp32.onnx`, `gfpgan_fp16.onnx`, `manifest.json`).

    `weights`: an official `.pth` (loaded strictly), or None for the architecture with random weights
    seeded by `seed` (tests, benchmarks).
    """
    if opset < 17:
        raise ValueError(f"opset must be >= 17, not {opset}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if weights is not None:
        state_dict, source = load_weights(Path(weights))
        model = load_model(state_dict, config)
    else:
        model = seeded_model(config, seed)
        source = {"random_seed": seed, "description": f"random seed {seed}"}
    model.fold_constants()

    fp32_path = out_dir / FP32_FILE
    logger.info("exporting fp32 ONNX to %s", fp32_path)
    export_onnx_fp32(model, fp32_path, input_size=config.out_size, opset=opset)
    files = [_model_file(fp32_path, "fp32")]
    notes = [
        "Input `input` Nx3xSxS RGB in [-1, 1]; output `output` same; batch axis dynamic.",
        "Noise is the checkpoint's stored noise (official randomize_noise=False).",
    ]
    if fp16:
        fp16_path = out_dir / FP16_FILE
        logger.info("converting to fp16: %s", fp16_path)
        convert_fp16(fp32_path, fp16_path)
        files.append(_model_file(fp16_path, "fp16"))
        notes.append(FP16_NOTE)
    else:
        (out_dir / FP16_FILE).unlink(missing_ok=True)

    manifest = Manifest(
        model="GFPGANv1Clean",
        files=files,
        opset=opset,
        source_weights=source,
        config=config.to_dict(),
        exporter={
            "photopipe": _version("photopipe"),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": _version("onnxruntime")
            if _version("onnxruntime") != "not installed"
            else _version("onnxruntime-gpu"),
            "onnxconverter-common": _version("onnxconverter-common"),
            "torch_exporter": "torchscript (dynamo=False)",
        },
        notes=notes,
    )
    manifest.write(out_dir)
    return manifest
