"""Swagger UI for the API's OpenAPI document, served by the API function itself (`/api/v1/docs`), so the
deployed API has it too. Swagger UI is vendored (`swagger_ui/VENDORED.json` pins each file's sha256); the
files are read on first use, not at import (most requests never need them)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

ASSETS_DIR = Path(__file__).with_name("swagger_ui")
# name -> content type; nothing else in the folder is served
ASSETS = {
    "swagger-ui-bundle.js": "application/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "photopipe-init.js": "application/javascript; charset=utf-8",
}
# No inline script and no eval; Swagger UI sets inline styles and shows data: images.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>photopipe API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="docs/swagger-ui.css">
</head>
<body>
<main id="swagger-ui" aria-label="photopipe API reference"></main>
<script src="docs/swagger-ui-bundle.js"></script>
<script src="docs/photopipe-init.js"></script>
</body>
</html>
"""


@cache
def asset(name: str) -> tuple[str, str] | None:
    """(text, content type) of a Swagger UI file, or None for a name that is not one."""
    content_type = ASSETS.get(name)
    if content_type is None:
        return None
    return (ASSETS_DIR / name).read_text(encoding="utf-8"), content_type
