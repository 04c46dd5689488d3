"""The Lambda layer carries only the package's runtime dependencies (layers/photopipe/requirements.txt):
OpenCV, ONNX Runtime and PyTorch live in the GPU worker image and the exporter. A function that imported
one of them would fail on its first cold start in AWS, while every test here (where they are installed)
passes - so import every function with those modules made unimportable, in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.conftest import ROOT

WORKER_ONLY = ("cv2", "onnxruntime", "torch", "onnx", "onnxconverter_common")
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))

PROBE = textwrap.dedent(
    """
    import importlib.util, os, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not in the Lambda layer")
            return None

    sys.meta_path.insert(0, Block())
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "photopipe")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "photopipe")
    for fn in sys.argv[2].split(","):
        spec = importlib.util.spec_from_file_location(f"fn_{fn}", f"functions/{fn}/app.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert callable(module.handler), fn
    # what the API's enhancement routes reach at request time
    import photopipe.usecases.enhance_jobs, photopipe.usecases.exports, photopipe.usecases.fleet  # noqa
    print("ok", len(sys.argv[2].split(",")))
    """
)


def test_every_function_imports_without_the_worker_only_libraries() -> None:
    assert {"api", "ingest", "classify", "exports"} <= set(FUNCTIONS)
    result = subprocess.run(
        [sys.executable, "-c", PROBE, ",".join(WORKER_ONLY), ",".join(FUNCTIONS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"ok {len(FUNCTIONS)}"


def test_the_layer_requirements_leave_them_out() -> None:
    requirements = (ROOT / "layers" / "photopipe" / "requirements.txt").read_text().lower()
    for name in ("opencv", "onnxruntime", "torch"):
        assert name not in requirements
