"""Shared fixtures: one reduced GFPGAN export per test process."""

from __future__ import annotations

from pathlib import Path

import pytest

from photopipe_export.arch import REDUCED
from photopipe_export.export import export_gfpgan

REDUCED_SEED = 7


@pytest.fixture(scope="session")
def reduced_gfpgan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reduced configuration of the real architecture with random weights seeded by `REDUCED_SEED`,
    exported (fp32, fp16, manifest) once per test process. Tests copy it before changing anything."""
    out = tmp_path_factory.mktemp("gfpgan-reduced")
    export_gfpgan(None, out, config=REDUCED, seed=REDUCED_SEED)
    return out
