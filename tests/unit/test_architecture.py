"""The dependency rule, read from the source (every `import`, `TYPE_CHECKING` ones included):

    functions/*/app.py ──> api, wiring, models ──> ...
    wiring ──> anything in the runtime package (it composes the process)
    api ──> use cases, libraries, models/errors/settings        (never an adapter)
    use cases ──> adapters, libraries, models/errors/settings
    adapters ──> models/errors/settings                          (never a library or a use case)
    libraries (imaging, classification, enhance, auth) ──> other libraries, models/errors/settings
    models ──> models only

Nothing in the runtime package (the Lambda layer) imports the local stack, the CLI or the exporter, and
every domain model is defined in `photopipe.models`."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "layers" / "photopipe" / "photopipe"
BOTTOM = {"models", "errors", "settings", "observability", "__init__"}
LIBRARIES = {"imaging", "classification", "enhance", "auth"}
ALLOWED: dict[str, set[str]] = {
    "models": {"models"},
    "errors": set(),
    "observability": set(),
    "settings": {"errors"},
    "__init__": set(),
    **{lib: BOTTOM | LIBRARIES for lib in LIBRARIES},
    "adapters": BOTTOM | {"adapters"},
    "usecases": BOTTOM | LIBRARIES | {"adapters", "usecases"},
    "api": BOTTOM | LIBRARIES | {"usecases", "api", "wiring"},
    "wiring": BOTTOM | LIBRARIES | {"adapters", "usecases", "api", "wiring"},
}
OUTSIDE_THE_LAYER = ("photopipe_local", "photopipe_cli", "photopipe_export", "tests", "functions")
HANDLER_MAY_IMPORT = {"api", "wiring", "models", "observability", "errors"}


def _imports(path: Path) -> Iterator[tuple[int, str]]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            # `from photopipe import wiring` imports the submodule `photopipe.wiring`
            if node.module == "photopipe":
                for alias in node.names:
                    if (PACKAGE / alias.name).is_dir() or (PACKAGE / f"{alias.name}.py").is_file():
                        yield node.lineno, f"photopipe.{alias.name}"


def _part(module: str) -> str | None:
    """`photopipe.adapters.s3` -> `adapters`; `photopipe` -> `__init__`; not ours -> None."""
    parts = module.split(".")
    if parts[0] != "photopipe":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def _runtime_modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_package_is_found() -> None:
    assert len(_runtime_modules()) > 40
    assert {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in _runtime_modules()} <= set(ALLOWED)


@pytest.mark.parametrize("path", _runtime_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_follow_the_dependency_rule(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    problems = []
    for line, module in _imports(path):
        if module.split(".")[0] in OUTSIDE_THE_LAYER:
            problems.append(f"line {line}: {module} is not part of the Lambda layer")
            continue
        target = _part(module)
        if target is not None and target != own and target not in ALLOWED[own]:
            problems.append(f"line {line}: {own} may not import {module}")
    assert problems == [], f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", sorted((ROOT / "functions").glob("*/app.py")), ids=lambda p: p.parent.name)
def test_handlers_import_only_the_edge_of_the_package(path: Path) -> None:
    problems = []
    for line, module in _imports(path):
        if module.split(".")[0] in {"boto3", "botocore"}:
            problems.append(f"line {line}: a handler does not talk to AWS itself ({module})")
        target = _part(module)
        if target is not None and target not in HANDLER_MAY_IMPORT:
            problems.append(f"line {line}: a handler reaches past the wiring into {module}")
    assert problems == [], f"{path.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", sorted((ROOT / "functions").glob("*/app.py")), ids=lambda p: p.parent.name)
def test_handlers_stay_small(path: Path) -> None:
    code = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    assert len(code) <= 40, (
        f"{path.relative_to(ROOT)} has {len(code)} non-blank lines: move logic into the layer"
    )


# Pydantic models outside `photopipe.models` are only these kinds: the API's request and response bodies,
# the process settings, and the vision model's answer schema (a library's own parsing).
NON_DOMAIN_MODEL_MODULES = {"api/schemas.py", "settings.py", "classification/answer.py"}


def _model_classes(path: Path) -> Iterator[str]:
    """Pydantic models, and the enums of a record's states."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
            if bases & {"BaseModel", "SqsRecordModel"} or (
                "StrEnum" in bases and node.name.endswith("State")
            ):
                yield node.name


def test_every_domain_model_lives_in_photopipe_models() -> None:
    stray = {
        str(p.relative_to(PACKAGE)): names
        for p in _runtime_modules()
        if p.relative_to(PACKAGE).parts[0] != "models"
        and str(p.relative_to(PACKAGE)) not in NON_DOMAIN_MODEL_MODULES
        and (names := sorted(_model_classes(p)))
    }
    assert stray == {}
    # and the exceptions hold what they say: no state enum or record among them
    for module in NON_DOMAIN_MODEL_MODULES:
        assert not any(n.endswith(("State", "Record")) for n in _model_classes(PACKAGE / module)), module
