"""The API documentation pages, served offline: Swagger UI at ``/docs``, ReDoc at ``/redoc``.

A bench PC in a glovebox often has no internet, so the pages load their JavaScript, CSS and
favicon from the server itself (``/docs/assets/<file>``), taken from the files the
``fastapi-offline`` package ships (Swagger UI and ReDoc bundles); they reference no other
host. Google Fonts are off and the Swagger validator badge (which calls a public service) is
disabled.

Token rule: these paths, ``/openapi.json`` and the assets are the only ones that also take
the token as ``?token=`` (a browser cannot add a header to a page it opens, nor to the
scripts that page loads); each page passes the token it was opened with on to what it loads.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse

ASSETS_PREFIX = "/docs/assets/"
"""URL prefix of the pages' static files."""

ASSET_FILES: dict[str, str] = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
"""The files served under :data:`ASSETS_PREFIX` (name → media type); nothing else is."""

DOCS_PAGES = frozenset({"/docs", "/redoc", "/openapi.json"})
"""The API description pages (besides the assets) that take the token as ``?token=``."""


def is_docs_path(path: str) -> bool:
    """True for the paths that may carry the token as a query parameter."""
    return path in DOCS_PAGES or (path.startswith(ASSETS_PREFIX)
                                  and path[len(ASSETS_PREFIX):] in ASSET_FILES)


def asset_folder() -> Path:
    """The folder holding :data:`ASSET_FILES` (``fastapi_offline/static``)."""
    return Path(str(importlib.resources.files("fastapi_offline") / "static"))


def add_docs_routes(app: FastAPI, title: str) -> None:
    """Add ``/docs``, ``/redoc`` and ``/docs/assets/{name}`` to ``app`` (not in the schema).

    Unknown asset names answer 404."""
    folder = asset_folder()

    def with_token(url: str, request: Request) -> str:
        token = request.query_params.get("token")
        return f"{url}?token={quote(token, safe='')}" if token else url

    async def swagger(request: Request) -> HTMLResponse:
        page = get_swagger_ui_html(
            openapi_url=with_token("/openapi.json", request), title=f"{title} - docs",
            swagger_js_url=with_token(ASSETS_PREFIX + "swagger-ui-bundle.js", request),
            swagger_css_url=with_token(ASSETS_PREFIX + "swagger-ui.css", request),
            swagger_favicon_url=with_token(ASSETS_PREFIX + "favicon.png", request),
            swagger_ui_parameters={"validatorUrl": None})
        return _private(page)

    async def redoc(request: Request) -> HTMLResponse:
        page = get_redoc_html(
            openapi_url=with_token("/openapi.json", request), title=f"{title} - ReDoc",
            redoc_js_url=with_token(ASSETS_PREFIX + "redoc.standalone.js", request),
            redoc_favicon_url=with_token(ASSETS_PREFIX + "favicon.png", request),
            with_google_fonts=False)
        return _private(page)

    async def asset(request: Request) -> FileResponse:
        name = request.path_params["name"]
        if name not in ASSET_FILES:
            raise HTTPException(404, f"no documentation asset {name!r}")
        return FileResponse(folder / name, media_type=ASSET_FILES[name],
                            headers={"Cache-Control": "private, max-age=86400"})

    # Starlette routes: the app-wide bearer dependency would refuse the ?token= form; the
    # auth middleware has already checked these paths (is_docs_path).
    app.add_route("/docs", swagger, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
    app.add_route(ASSETS_PREFIX + "{name}", asset, include_in_schema=False)


def _private(page: HTMLResponse) -> HTMLResponse:
    """The page may hold the token in its URLs: never cached, no referrer leaves it."""
    page.headers["Cache-Control"] = "no-store"
    page.headers["Referrer-Policy"] = "no-referrer"
    return page
