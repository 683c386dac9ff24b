"""Server-rendered pages (placeholder until the web shell lands): only error pages for now."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse


def install(app: FastAPI) -> None:
    """Mount the pages and static files on ``app``."""


def render_error_page(request: Request, status: int, detail: str) -> HTMLResponse:
    """An HTML error page for browsers."""
    return HTMLResponse(f"<h1>{status}</h1><p>{detail}</p>", status_code=status)
