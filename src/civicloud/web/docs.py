"""``/docs``: the interactive API reference (Swagger UI), served whole from the installation.

FastAPI's own page loads Swagger UI from a public CDN, which leaves it blank on an intranet or
wherever that CDN cannot be reached, and runs an inline script. Here Swagger UI's files come
from the ``fastapi-offline`` package (Swagger UI 5, MIT and Apache-2.0 licensed) and are served
under ``/docs/assets``; the page starts it with a script of ours under ``/static``. The page
carries the same security headers as every other page, with a Content-Security-Policy that
allows nothing but this installation ('self'; images also as ``data:`` URIs, which Swagger UI's
stylesheet uses for its icons).
"""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

#: Where the package keeps Swagger UI's bundle and stylesheet.
SWAGGER_UI_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
ASSETS_URL = "/docs/assets"
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_HEADERS = {
    "Content-Security-Policy": DOCS_CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def docs_page(*, title: str, openapi_url: str) -> str:
    """The HTML of the reference page: Swagger UI's files, started by ``/static/js/api-docs.js``."""
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} API</title>
<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">
<link rel="icon" href="/static/img/emblem.svg">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>
<script src="{ASSETS_URL}/swagger-ui-bundle.js"></script>
<script src="/static/js/api-docs.js"></script>
</body>
</html>
"""


def install_docs(app: FastAPI, *, path: str = "/docs") -> None:
    """Serve the reference at ``path`` and Swagger UI's files below it (``app.docs_url`` must be
    ``None``, so that FastAPI does not add its own page)."""
    assert app.docs_url is None, "FastAPI's own /docs loads Swagger UI from a CDN"
    openapi_url = app.openapi_url or "/openapi.json"
    page = docs_page(title=app.title, openapi_url=openapi_url)
    app.mount(ASSETS_URL, StaticFiles(directory=SWAGGER_UI_DIR), name="docs-assets")

    @app.get(path, include_in_schema=False, name="docs")
    def api_docs() -> HTMLResponse:
        """The interactive API reference."""
        return HTMLResponse(page, headers=DOCS_HEADERS)
