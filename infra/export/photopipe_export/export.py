"""Export GFPGANv1Clean to ONNX: an fp32 file, an fp16 file and a sha256 manifest (needs torch).

Interface of both files (the one other GFPGAN ONNX tools use): input `input`, Nx3xSxS RGB in [-1, 1]
(S = 512 for v1.3/v1.4), output `output`, same shape and range; the batch axis `batch` is dynamic.
The fp32 file takes and returns float32. The fp16 file is the fp32 graph converted by
onnxconverter-common with `keep_io_types=False`: its input and output are **float16** too, so a caller
casts (`GfpganSession` does).

Weight-only computations are folded away: the model precomputes them (`fold_constants()`), the
TorchScript exporter folds constants, and ONNX Runtime's basic offline optimization (constant folding,
identity elimination; provider-independent) runs on the result. `weight_only_nodes()` must then be empty,
and `check_cuda_kernels()` must find a CUDA kernel for every node (op, version, types) in the kernel table
of the pinned onnxruntime-gpu, so the whole graph runs on the GPU provider.

The fp16 file keeps every modulated convolution's style and demodulation vectors in float32
(`fp32_islands()`; small per-sample vectors, where a sum of hundreds of squares and its reciprocal square
root lose most in fp16); everything image-sized is float16, upsampling included.
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
from photopipe_export.kernels import graph_skeleton, load_table, uncovered_nodes

logger = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_AXIS = "batch"
FP32_FILE = "gfpgan_fp32.onnx"
FP16_FILE = "gfpgan_fp16.onnx"
CUDA_NOTE = (
    "Every node has a kernel in the CUDA execution provider of the pinned onnxruntime-gpu "
    "(photopipe_export/data/ort_cuda_kernels.json): nothing falls back to the CPU, CUDA graphs can be captured."
)
FP16_ISLANDS_NOTE = (
    "The fp16 file computes the per-sample style and demodulation vectors of every modulated convolution "
    "in float32 (fp32_islands); the image-sized tensors are float16."
)
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


def exporter_versions() -> dict[str, str]:
    """The tool versions a manifest records."""
    return {
        "photopipe": _version("photopipe"),
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": _version("onnxruntime")
        if _version("onnxruntime") != "not installed"
        else _version("onnxruntime-gpu"),
        "onnxconverter-common": _version("onnxconverter-common"),
        "torch_exporter": "torchscript (dynamo=False)",
    }


def export_onnx_fp32(
    model: torch.nn.Module,
    path: Path,
    *,
    input_size: int,
    opset: int = OPSET,
    dynamic_axes: dict[int, str] | None = None,
    output_axes: dict[int, str] | None = None,
) -> None:
    """Trace `model` (constants already folded) to `path` and fold what is left with ONNX Runtime.
    `dynamic_axes`: the input's dynamic axes (default: the batch axis only); `output_axes`: the output's
    (default: the same)."""
    dummy = torch.zeros(1, 3, input_size, input_size)
    axes = dynamic_axes or {0: BATCH_AXIS}
    out_axes = output_axes or axes
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
                dynamic_axes={INPUT_NAME: dict(axes), OUTPUT_NAME: dict(out_axes)},
                do_constant_folding=True,
            )
        _fold_with_onnxruntime(raw, path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    leftover = weight_only_nodes(proto)
    if leftover:
        kinds = sorted({n.op_type for n in leftover})
        raise RuntimeError(f"{len(leftover)} weight-only nodes survived constant folding: {kinds}")


FP32_SCOPE = "/modulated_conv/"


def fp32_islands(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes the fp16 file keeps in float32: inside every modulated convolution, those whose
    outputs are per-sample vectors (rank 2) - the style (modulation `Gemm`, its peak normalisation) and the
    demodulation `rsqrt(s² @ W²ᵀ + eps)`. A sum of hundreds of squares and its reciprocal square root are
    where fp16 loses most (and `eps` = 1e-8 is below fp16's smallest subnormal); the tensors are tiny, so
    float32 costs nothing measurable. Image-sized tensors (convolutions, activations) stay fp16."""
    inferred = onnx.shape_inference.infer_shapes(graph_skeleton(model))
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in inferred.graph.value_info}
    return [
        node.name
        for node in model.graph.node
        if FP32_SCOPE in node.name and node.output and all(rank.get(o) == 2 for o in node.output)
    ]


def _resize_parameters_in_fp32(model: onnx.ModelProto) -> None:
    """`Resize`'s `roi` and `scales` must be float32 whatever the data's type: point them back at float32
    copies of the initializers the converter halved, and drop the halved ones nothing uses any more."""
    initializers = {i.name: i for i in model.graph.initializer}
    copies: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        for k in (1, 2):
            name = node.input[k] if len(node.input) > k else ""
            init = initializers.get(name)
            if init is None or init.data_type != onnx.TensorProto.FLOAT16:
                continue
            if name not in copies:
                values = onnx.numpy_helper.to_array(init).astype(np.float32)
                model.graph.initializer.append(onnx.numpy_helper.from_array(values, f"{name}_fp32"))
                copies[name] = f"{name}_fp32"
            node.input[k] = copies[name]
    used = {i for node in model.graph.node for i in node.input}
    for init in list(model.graph.initializer):
        if init.name in copies and init.name not in used:
            model.graph.initializer.remove(init)


def check_cuda_kernels(path: Path) -> None:
    """Refuse a graph with a node the pinned onnxruntime-gpu's CUDA provider has no kernel for: it would
    run on the CPU, with device copies around it, and CUDA graph capture would be refused."""
    table = load_table()
    missing = uncovered_nodes(onnx.load(str(path)), table)
    if missing:
        listed = "; ".join(str(m) for m in missing[:10])
        raise RuntimeError(
            f"{path.name}: {len(missing)} nodes have no {table.provider} kernel "
            f"(onnxruntime-gpu {table.source.get('onnxruntime_gpu', '?')}): {listed}"
        )


def convert_fp16(
    src: Path, dst: Path, *, keep_io_types: bool = False, fp32_nodes: list[str] | None = None
) -> None:
    """The fp32 graph in fp16 (onnxconverter-common), except `fp32_nodes` (default: `fp32_islands`).

    `Resize` is converted too (onnxconverter-common blocks it by default only because of its float32
    `scales`, which are put back): upsampling in fp16 saves a cast pair and half the memory traffic on the
    largest tensors."""
    from onnxconverter_common import float16

    proto = onnx.load(str(src))
    islands = fp32_islands(proto) if fp32_nodes is None else fp32_nodes
    op_block_list = [op for op in float16.DEFAULT_OP_BLOCK_LIST if op != "Resize"]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)  # tiny values
        half = float16.convert_float_to_float16(
            proto,
            keep_io_types=keep_io_types,
            disable_shape_infer=False,
            op_block_list=op_block_list,
            node_block_list=islands,
        )
    _resize_parameters_in_fp32(half)
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
    check_cuda_kernels(fp32_path)
    files = [_model_file(fp32_path, "fp32")]
    notes = [
        "Input `input` Nx3xSxS RGB in [-1, 1]; output `output` same; batch axis dynamic.",
        "Noise is the checkpoint's stored noise (official randomize_noise=False).",
        CUDA_NOTE,
    ]
    if fp16:
        fp16_path = out_dir / FP16_FILE
        logger.info("converting to fp16: %s", fp16_path)
        convert_fp16(fp32_path, fp16_path)
        check_cuda_kernels(fp16_path)
        files.append(_model_file(fp16_path, "fp16"))
        notes.append(FP16_NOTE)
        notes.append(FP16_ISLANDS_NOTE)
    else:
        (out_dir / FP16_FILE).unlink(missing_ok=True)

    manifest = Manifest(
        model="GFPGANv1Clean",
        files=files,
        opset=opset,
        source_weights=source,
        config=config.to_dict(),
        exporter=exporter_versions(),
        notes=notes,
    )
    manifest.write(out_dir)
    return manifest
