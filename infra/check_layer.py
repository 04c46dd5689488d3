"""After `sam build` (`make build` runs it): prove the Lambda layer carries the runtime package only, and
report its unzipped size against Lambda's limit. Prints one JSON object; exits 1 when a tool module (the
local stack, the CLI, the exporter, tests) is in the layer or the functions plus layer exceed 250 MB.

    python3 infra/check_layer.py [.aws-sam/build]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024  # function code + all its layers, unzipped
NOT_IN_THE_LAYER = (
    "photopipe_local",
    "photopipe_cli",
    "photopipe_export",
    "tests",
    "functions",
    "benchmarks",
)
NOT_IN_THE_PACKAGE = ("local", "cli.py", "enhance/arch.py", "enhance/export.py")


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def check(build: Path) -> dict[str, object]:
    site = build / "SharedLayer" / "python"
    if not (site / "photopipe").is_dir():
        raise SystemExit(f"no built layer at {site}: run `make build` first")
    found = [name for name in NOT_IN_THE_LAYER if (site / name).exists()]
    found += [f"photopipe/{name}" for name in NOT_IN_THE_PACKAGE if (site / "photopipe" / name).exists()]
    layer = size(site)
    functions = {
        d.name: size(d) for d in sorted(build.iterdir()) if d.is_dir() and d.name.endswith("Function")
    }
    biggest = max(functions.values(), default=0)
    packages = sorted(((size(p), p.name) for p in site.iterdir() if p.is_dir()), reverse=True)[:8]
    return {
        "layer": str(site),
        "layer_unzipped_mb": round(layer / 2**20, 1),
        "largest_function_unzipped_kb": round(biggest / 2**10, 1),
        "lambda_limit_mb": LAMBDA_UNZIPPED_LIMIT // 2**20,
        "headroom_mb": round((LAMBDA_UNZIPPED_LIMIT - layer - biggest) / 2**20, 1),
        "largest_packages_mb": {name: round(n / 2**20, 1) for n, name in packages},
        "tool_modules_in_layer": found,
        "ok": not found and layer + biggest <= LAMBDA_UNZIPPED_LIMIT,
    }


def main() -> int:
    report = check(Path(sys.argv[1] if len(sys.argv) > 1 else ".aws-sam/build"))
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
