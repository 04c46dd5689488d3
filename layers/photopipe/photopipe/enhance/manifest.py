"""The manifest of an exported model directory (`manifest.json`), read and verified without torch.

Every model file is pinned by sha256 and size; `verified_file()` checks them before a file is used.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


class ManifestError(Exception):
    """The model directory's manifest is missing, malformed, or a file does not match it."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # "float32" | "float16"
    shape: list[int | str]  # e.g. ["batch", 3, 512, 512]


@dataclass(frozen=True)
class ModelFile:
    path: str  # relative to the model directory
    sha256: str
    bytes: int
    precision: str  # "fp32" | "fp16"
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


@dataclass(frozen=True)
class Manifest:
    model: str
    files: list[ModelFile]
    opset: int
    source_weights: dict[str, Any]
    config: dict[str, Any]
    exporter: dict[str, str]
    notes: list[str] = field(default_factory=list)
    version: int = MANIFEST_VERSION

    def file(self, precision: str) -> ModelFile:
        for entry in self.files:
            if entry.precision == precision:
                return entry
        have = ", ".join(f.precision for f in self.files) or "none"
        raise ManifestError(f"the model has no {precision} file (it has: {have})")

    @property
    def precisions(self) -> list[str]:
        return [f.precision for f in self.files]

    @property
    def input_size(self) -> int:
        return int(self.config.get("out_size", 512))

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    def write(self, model_dir: Path) -> Path:
        path = model_dir / MANIFEST_NAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _spec(raw: dict[str, Any]) -> TensorSpec:
    return TensorSpec(name=str(raw["name"]), dtype=str(raw["dtype"]), shape=list(raw["shape"]))


def parse_manifest(raw: dict[str, Any]) -> Manifest:
    try:
        files = [
            ModelFile(
                path=str(f["path"]),
                sha256=str(f["sha256"]),
                bytes=int(f["bytes"]),
                precision=str(f["precision"]),
                inputs=[_spec(s) for s in f["inputs"]],
                outputs=[_spec(s) for s in f["outputs"]],
            )
            for f in raw["files"]
        ]
        return Manifest(
            model=str(raw["model"]),
            files=files,
            opset=int(raw["opset"]),
            source_weights=dict(raw["source_weights"]),
            config=dict(raw["config"]),
            exporter=dict(raw["exporter"]),
            notes=list(raw.get("notes", [])),
            version=int(raw.get("version", MANIFEST_VERSION)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ManifestError(f"malformed manifest: {e!r}") from e


def read_manifest(model_dir: Path) -> Manifest:
    path = Path(model_dir) / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(
            f"no {MANIFEST_NAME} in {model_dir}: export a model first "
            "(photopipe models export --weights GFPGANv1.4.pth --out DIR)"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ManifestError(f"cannot read {path}: {e}") from e
    if not isinstance(raw, dict):
        raise ManifestError(f"malformed manifest {path}: not a JSON object")
    return parse_manifest(raw)


def verified_file(model_dir: Path, entry: ModelFile) -> Path:
    """The file's path once its size and sha256 match the manifest; `ManifestError` otherwise."""
    path = Path(model_dir) / entry.path
    if Path(entry.path).is_absolute() or ".." in Path(entry.path).parts:
        raise ManifestError(f"manifest file path {entry.path!r} is outside the model directory")
    if not path.is_file():
        raise ManifestError(f"model file {path} listed in the manifest is missing")
    size = path.stat().st_size
    if size != entry.bytes:
        raise ManifestError(f"model file {path} has {size} bytes, the manifest says {entry.bytes}")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise ManifestError(
            f"model file {path} does not match the manifest (sha256 {digest}, expected {entry.sha256}); "
            "re-export it or fetch the right file"
        )
    return path
