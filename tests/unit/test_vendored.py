"""Every vendored file is exactly the published one (its sha256 as recorded), and nothing unrecorded hides in
the vendor folder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from tests.conftest import ROOT

MANIFESTS = [
    ROOT / "web" / "vendor" / "VENDORED.json",
    ROOT / "layers/photopipe/photopipe/api/swagger_ui/VENDORED.json",
]
ENTRIES = [(m, entry) for m in MANIFESTS for entry in json.loads(m.read_text())["files"]]


@pytest.mark.parametrize(
    ("manifest", "entry"), ENTRIES, ids=[f"{m.parent.name}/{e['path']}" for m, e in ENTRIES]
)
def test_vendored_file_matches_its_recorded_sha256(manifest: Path, entry: dict[str, str]) -> None:
    path = manifest.parent / entry["path"]
    assert path.is_file(), f"{path} is recorded but missing"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], (
        f"{path} differs from {entry['package']}@{entry['version']}'s {entry['file_in_package']}"
    )
    assert entry["version"]
    assert entry["license"]


def test_the_web_vendor_folder_holds_only_recorded_files() -> None:
    manifest = MANIFESTS[0]
    recorded = {e["path"] for e in json.loads(manifest.read_text())["files"]} | {manifest.name}
    present = {p.relative_to(manifest.parent).as_posix() for p in manifest.parent.rglob("*") if p.is_file()}
    assert present == recorded


def test_the_ui_imports_its_libraries_from_the_vendor_folder_only() -> None:
    # plain ES modules: every import is relative (no bare specifier needing a bundler or an import map)
    for path in (ROOT / "web" / "js").rglob("*.js"):
        for line in path.read_text().splitlines():
            if line.startswith("import ") or (' from "' in line and line.lstrip().startswith("}")):
                spec = line.rsplit("from", 1)[-1].strip().strip(";").strip('"')
                assert spec.startswith("."), f"{path.name}: {line}"
