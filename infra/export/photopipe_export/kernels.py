"""Which nodes of an ONNX graph have a kernel in an ONNX Runtime execution provider, read from ONNX Runtime's
own kernel table (`docs/OperatorKernels.md`, generated from the registered kernels).

A node runs on the CUDA provider only if the provider registers a kernel for its domain, its operator at the
node's opset version (the schema's `since_version`) and the types of its inputs and outputs. One node without
a kernel is assigned to the CPU: its neighbours then need device copies, which costs time on every run and
makes CUDA graph capture impossible. `uncovered_nodes(model, table)` lists those nodes; the exporter and the
tests require it to be empty for the CUDA provider of the ONNX Runtime version the GPU image pins.

The table is kept in the repository as data (`data/ort_cuda_kernels.json`), extracted by
`python -m photopipe_export.kernels OperatorKernels.md --out ...` from the markdown file: every row of one
provider's section (domain, operator, opset range, the types each type constraint allows), plus where the
file came from and its sha256.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
from onnx import defs

DATA_DIR = Path(__file__).resolve().parent / "data"
CUDA_KERNELS = DATA_DIR / "ort_cuda_kernels.json"
CUDA = "CUDAExecutionProvider"
ONNX_DOMAIN = "ai.onnx"

_SECTION = re.compile(r'^<a name="(?P<anchor>[a-z]+executionprovider)"/>\s*$')
_DOMAIN = re.compile(r"^\|\*\*Operator Domain:\*\* \*(?P<domain>[^*]+)\*\|")
_VERSIONS = re.compile(r"^(\d+\+?|\[\d+, \d+\]|\d+-\d+)$")
_CONSTRAINT = re.compile(r"\*\*(?P<name>[A-Za-z0-9_]+)\*\* = (?P<types>[^<|]+)")


@dataclass(frozen=True)
class KernelRow:
    """One registration: versions `first`..`last` (None: and later), allowed types per type constraint."""

    first: int
    last: int | None
    types: dict[str, frozenset[str]]

    def covers(self, version: int) -> bool:
        return self.first <= version and (self.last is None or version <= self.last)


@dataclass(frozen=True)
class KernelTable:
    provider: str
    rows: dict[tuple[str, str], list[KernelRow]]  # (domain, op) -> registrations
    source: dict[str, Any]

    def kernels(self, domain: str, op: str) -> list[KernelRow]:
        return self.rows.get((domain or ONNX_DOMAIN, op), [])


@dataclass(frozen=True)
class Uncovered:
    """A node the provider cannot run, and why."""

    name: str
    domain: str
    op: str
    version: int
    reason: str

    def __str__(self) -> str:
        return f"{self.domain}::{self.op}-{self.version} ({self.name}): {self.reason}"


# ------------------------------------------------------------------------------------------ parsing


def _versions(cell: str) -> tuple[int, int | None]:
    """`13+`, `13`, `[6, 12]` or `6-12` → (first, last)."""
    cell = cell.strip()
    if cell.endswith("+"):
        return int(cell[:-1]), None
    if cell.startswith("["):
        first, last = cell.strip("[]").split(",")
        return int(first), int(last)
    if "-" in cell:
        first, last = cell.split("-")
        return int(first), int(last)
    return int(cell), int(cell)


def _types(cell: str) -> dict[str, frozenset[str]]:
    """`**T** = tensor(float), tensor(float16)<br/> **T1** = ...` → {"T": {"float", "float16"}, ...}."""
    found: dict[str, frozenset[str]] = {}
    for match in _CONSTRAINT.finditer(cell):
        names = [t.strip() for t in match.group("types").split(",") if t.strip()]
        found[match.group("name")] = frozenset(names)
    return found


def parse_operator_kernels(text: str, provider: str = CUDA) -> dict[tuple[str, str], list[KernelRow]]:
    """Every row of `provider`'s section of OperatorKernels.md."""
    anchor = provider.lower()
    rows: dict[tuple[str, str], list[KernelRow]] = {}
    inside = False
    domain = ONNX_DOMAIN
    op = ""
    for line in text.splitlines():
        section = _SECTION.match(line)
        if section:
            inside = section.group("anchor") == anchor
            continue
        if not inside or not line.startswith("|"):
            continue
        if (found := _DOMAIN.match(line)) is not None:
            domain = found.group("domain")
            continue
        cells = line.split("|")
        if len(cells) < 6 or not _VERSIONS.match(cells[3].strip()):
            continue  # headers, separators, blank rows
        name, versions, types = cells[1].strip(), cells[3].strip(), cells[4].strip()
        if name:
            op = name
        first, last = _versions(versions)
        rows.setdefault((domain, op), []).append(KernelRow(first, last, _types(types)))
    if not rows:
        raise ValueError(f"no {provider} section found in the kernel table")
    return rows


def table_to_json(provider: str, rows: dict[tuple[str, str], list[KernelRow]], source: dict[str, Any]) -> str:
    by_domain: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for (domain, op), registrations in sorted(rows.items()):
        by_domain.setdefault(domain, {})[op] = [
            {"first": r.first, "last": r.last, "types": {k: sorted(v) for k, v in sorted(r.types.items())}}
            for r in registrations
        ]
    # one operator a line: small enough to review in a diff when the pinned version moves
    lines = ["{", f' "provider": {json.dumps(provider)},', f' "source": {json.dumps(source, indent=None)},']
    lines.append(' "kernels": {')
    for d, (domain, ops) in enumerate(by_domain.items()):
        lines.append(f"  {json.dumps(domain)}: {{")
        entries = [
            f"   {json.dumps(op)}: {json.dumps(regs, separators=(',', ':'))}" for op, regs in ops.items()
        ]
        lines.append(",\n".join(entries))
        lines.append("  }" + ("," if d < len(by_domain) - 1 else ""))
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def load_table(path: Path = CUDA_KERNELS) -> KernelTable:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    rows = {
        (domain, op): [
            KernelRow(int(r["first"]), r["last"], {k: frozenset(v) for k, v in r["types"].items()})
            for r in registrations
        ]
        for domain, ops in raw["kernels"].items()
        for op, registrations in ops.items()
    }
    return KernelTable(provider=str(raw["provider"]), rows=rows, source=dict(raw["source"]))


# ------------------------------------------------------------------------------------------ checking


def _type_name(elem_type: int) -> str:
    """onnx.TensorProto.FLOAT16 → "tensor(float16)" (the table's spelling)."""
    name = onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    spelled = {"float32": "float", "float64": "double", "bool": "bool"}.get(name, name)
    return f"tensor({spelled})"


def graph_skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph without initializer data (declared as inputs instead): shape inference on a 350 MB model
    would otherwise copy every weight."""
    graph = onnx.GraphProto(name=model.graph.name)
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    declared = {v.name for v in graph.input}
    for init in model.graph.initializer:
        if init.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return onnx.helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)


def value_types(model: onnx.ModelProto) -> dict[str, str]:
    """The element type of every value in the graph (after ONNX shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(graph_skeleton(model))
    graph = inferred.graph
    types: dict[str, str] = {}
    for value in [*graph.value_info, *graph.input, *graph.output]:
        elem = value.type.tensor_type.elem_type
        if elem:
            types[value.name] = _type_name(elem)
    for init in graph.initializer:
        types[init.name] = _type_name(init.data_type)
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = _type_name(attr.t.data_type)
    return types


def _opset(model: onnx.ModelProto, domain: str) -> int:
    for entry in model.opset_import:
        if (entry.domain or ONNX_DOMAIN) == domain:
            return int(entry.version)
    raise ValueError(f"the model imports no opset for domain {domain!r}")


def _formal_types(
    params: Iterable[defs.OpSchema.FormalParameter], actual: list[str]
) -> list[tuple[str, str]]:
    """Pairs (type constraint, actual value name) for the values bound to each formal parameter; a
    variadic last parameter takes every remaining value."""
    formals = list(params)
    pairs: list[tuple[str, str]] = []
    for index, name in enumerate(actual):
        if not name:
            continue
        if index < len(formals):
            formal = formals[index]
        elif formals and formals[-1].option == defs.OpSchema.FormalParameterOption.Variadic:
            formal = formals[-1]
        else:
            continue
        pairs.append((formal.type_str, name))
    return pairs


def uncovered_nodes(
    model: onnx.ModelProto, table: KernelTable, types: dict[str, str] | None = None
) -> list[Uncovered]:
    """The nodes `table`'s provider has no kernel for, at their opset version and with their value types
    (empty: every node can run on the provider). `types`: `value_types(model)`, when already computed."""
    types = value_types(model) if types is None else types
    found: list[Uncovered] = []
    for node in model.graph.node:
        domain = node.domain or ONNX_DOMAIN
        opset = _opset(model, domain)
        try:
            schema = defs.get_schema(node.op_type, opset, node.domain)
        except defs.SchemaError:
            found.append(Uncovered(node.name, domain, node.op_type, opset, "no ONNX schema"))
            continue
        version = int(schema.since_version)
        rows = [r for r in table.kernels(domain, node.op_type) if r.covers(version)]
        if not rows:
            have = [f"{r.first}-{r.last or ''}" for r in table.kernels(domain, node.op_type)]
            reason = f"no kernel for version {version}" + (
                f" (registered: {', '.join(have)})" if have else ""
            )
            found.append(Uncovered(node.name, domain, node.op_type, version, reason))
            continue
        bound = _formal_types(schema.inputs, list(node.input)) + _formal_types(
            schema.outputs, list(node.output)
        )
        problems = []
        for constraint, value in bound:
            actual = types.get(value)
            if actual is None:
                problems.append(f"type of {value!r} unknown")
                continue
            allowed = rows[0].types.get(constraint)
            if allowed is not None and actual not in allowed:
                problems.append(f"{constraint}={actual} not in {sorted(allowed)}")
        if problems:
            found.append(Uncovered(node.name, domain, node.op_type, version, "; ".join(problems)))
    return found


def signatures(
    model: onnx.ModelProto, types: dict[str, str] | None = None
) -> set[tuple[str, str, int, tuple[str, ...]]]:
    """(domain, op, version, input types) of every node: what a kernel check depends on."""
    types = value_types(model) if types is None else types
    out = set()
    for node in model.graph.node:
        domain = node.domain or ONNX_DOMAIN
        version = int(defs.get_schema(node.op_type, _opset(model, domain), node.domain).since_version)
        out.add((domain, node.op_type, version, tuple(types.get(i, "?") for i in node.input if i)))
    return out


# ------------------------------------------------------------------------------------------ extraction


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Extract one provider's kernel table from OperatorKernels.md"
    )
    parser.add_argument("markdown", type=Path, help="ONNX Runtime's docs/OperatorKernels.md")
    parser.add_argument("--out", type=Path, default=CUDA_KERNELS)
    parser.add_argument("--provider", default=CUDA)
    parser.add_argument("--source", action="append", default=[], metavar="KEY=VALUE", help="provenance")
    args = parser.parse_args(argv)
    data = args.markdown.read_bytes()
    rows = parse_operator_kernels(data.decode("utf-8"), args.provider)
    source: dict[str, Any] = dict(item.split("=", 1) for item in args.source)
    source["sha256"] = hashlib.sha256(data).hexdigest()
    source["extracted"] = (
        f"every row of the {args.provider} section: domain, operator, opset range, the types each "
        "type constraint allows (operator parameter names and descriptions dropped)"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(table_to_json(args.provider, rows, source), encoding="utf-8")
    print(f"{args.out}: {sum(len(v) for v in rows.values())} registrations of {len(rows)} operators")
    return 0


if __name__ == "__main__":
    sys.exit(main())
