"""The exported GFPGAN graphs can run whole on the GPU: every node (op, opset version, input and output types)
has a kernel in ONNX Runtime's CUDA provider kernel table for the pinned onnxruntime-gpu (kept as data:
`photopipe_export/data/ort_cuda_kernels.json`); the fp16 file keeps the style and demodulation vectors in
float32 and stays within 1e-2 of the fp32 file.

Seeded random weights of the real architecture, reduced configuration (the full-size graph has the same
node signatures: checked by the slow test in test_model_export.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from photopipe.enhance.session import CPU
from photopipe_export.arch import REDUCED, seeded_model
from photopipe_export.export import FP16_FILE, FP32_FILE, fp32_islands, weight_only_nodes
from photopipe_export.kernels import CUDA, load_table, signatures, uncovered_nodes, value_types
from tests.unit.enhance.conftest import REDUCED_SEED

SEED = REDUCED_SEED


@pytest.fixture(scope="module")
def exported(reduced_gfpgan: Path) -> Path:
    return reduced_gfpgan


def _faces(n: int, seed: int = 0) -> np.ndarray:
    return (
        np.random.default_rng(seed)
        .uniform(-1, 1, (n, 3, REDUCED.out_size, REDUCED.out_size))
        .astype(np.float32)
    )


def test_the_kernel_table_is_cuda_and_says_where_it_came_from() -> None:
    table = load_table()
    assert table.provider == CUDA
    assert table.source["repository"] == "microsoft/onnxruntime"
    assert table.source["path"] == "docs/OperatorKernels.md"
    assert len(table.source["commit"]) == 40
    assert len(table.source["sha256"]) == 64
    # the operators our graphs use are all in it, fp16 included
    for op in ("Conv", "Gemm", "MatMul", "Resize", "LeakyRelu", "Sqrt", "Cast", "AveragePool"):
        assert any(
            "tensor(float16)" in types for r in table.kernels("ai.onnx", op) for types in r.types.values()
        )


@pytest.mark.parametrize("name", [FP32_FILE, FP16_FILE])
def test_every_node_has_a_cuda_kernel(exported: Path, name: str) -> None:
    model = onnx.load(str(exported / name))
    table = load_table()

    missing = uncovered_nodes(model, table)

    ops = Counter(n.op_type for n in model.graph.node)
    print(f"{name}: {len(model.graph.node)} nodes, {dict(sorted(ops.items()))}")
    assert missing == []
    assert "Pow" not in ops  # the demodulation no longer squares weights at run time
    assert weight_only_nodes(model) == []
    # no shape arithmetic (int64 values computed at run time), which ONNX Runtime would place on the CPU
    types = value_types(model)
    assert [o for n in model.graph.node for o in n.output if types.get(o) == "tensor(int64)"] == []
    assert not {"Shape", "Expand", "Where", "ConstantOfShape"} & set(ops)


def test_the_checker_reports_nodes_without_a_cuda_kernel() -> None:
    # GIVEN a graph with an op the CUDA provider lacks (Det) and one whose type it lacks (ReduceMax on uint8)
    graph = helper.make_graph(
        [
            helper.make_node("Det", ["x"], ["d"], name="det"),
            helper.make_node("ReduceMax", ["u"], ["m"], name="max_u8", keepdims=0),
            helper.make_node("Sqrt", ["x"], ["s"], name="sqrt"),
        ],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 3]),
            helper.make_tensor_value_info("u", TensorProto.UINT8, [4]),
        ],
        [
            helper.make_tensor_value_info("d", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("m", TensorProto.UINT8, []),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 3, 3]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])

    missing = {u.name: u.reason for u in uncovered_nodes(model, load_table())}

    assert set(missing) == {"det", "max_u8"}  # Sqrt on float has a kernel
    assert "no kernel for version" in missing["det"]
    assert "T=tensor(uint8)" in missing["max_u8"]


def test_fp16_keeps_style_and_demodulation_in_fp32(exported: Path) -> None:
    fp32 = onnx.load(str(exported / FP32_FILE))
    fp16 = onnx.load(str(exported / FP16_FILE))
    types = value_types(fp16)
    islands = set(fp32_islands(fp32))
    by_name = {n.name: n for n in fp16.graph.node}

    # every demodulation (s² @ W²ᵀ, its sqrt) and every style (the modulation Gemm) runs in float32
    demodulated = sum(1 for n in fp32.graph.node if n.op_type == "Sqrt")
    assert demodulated == 9  # 9 demodulated convolutions in the reduced decoder
    for op in ("MatMul", "Sqrt", "ReduceMax"):
        nodes = [n for n in fp16.graph.node if n.op_type == op]
        assert len(nodes) == demodulated
        assert all(types[n.input[0]] == "tensor(float)" for n in nodes), op
    modulation = [n for n in fp16.graph.node if n.op_type == "Gemm" and "/modulation/" in n.name]
    assert modulation
    assert all(types[n.input[0]] == "tensor(float)" for n in modulation)
    assert islands <= set(by_name)
    # and the image-sized work is fp16: convolutions, activations, upsampling (with float32 scales)
    assert {types[n.input[0]] for n in fp16.graph.node if n.op_type in ("Conv", "LeakyRelu")} == {
        "tensor(float16)"
    }
    for n in (n for n in fp16.graph.node if n.op_type == "Resize"):
        assert (types[n.input[0]], types[n.input[2]]) == ("tensor(float16)", "tensor(float)")


def test_fp16_output_is_within_1e_2_of_fp32_on_the_cpu(exported: Path) -> None:
    x = _faces(3, seed=2)
    fp32 = ort.InferenceSession(str(exported / FP32_FILE), providers=[CPU]).run(None, {"input": x})[0]
    fp16 = ort.InferenceSession(str(exported / FP16_FILE), providers=[CPU]).run(
        None, {"input": x.astype(np.float16)}
    )[0]
    fp16 = fp16.astype(np.float32)
    import torch

    with torch.no_grad():
        reference = seeded_model(REDUCED, SEED)(torch.from_numpy(x)).numpy()

    error = float(np.abs(fp16 - fp32).max())
    print(f"fp16 vs fp32: max abs {error:.2e}, mean abs {float(np.abs(fp16 - fp32).mean()):.2e}")
    assert np.isfinite(fp16).all()
    assert error <= 1e-2
    assert float(np.abs(fp32 - reference).max()) <= 1e-3


def test_signatures_list_what_a_kernel_check_depends_on(exported: Path) -> None:
    sigs = signatures(onnx.load(str(exported / FP16_FILE)))
    assert ("ai.onnx", "Conv", 11, ("tensor(float16)", "tensor(float16)", "tensor(float16)")) in sigs
    assert ("ai.onnx", "MatMul", 13, ("tensor(float)", "tensor(float)")) in sigs
