"""Where the built browser page (``web/dist``) is, and what to say when it is not.

The page is built by npm from ``web/`` in a source checkout; a wheel does not
carry it. ``LLMSPACE_WEB_DIST`` points at a built page anywhere (a checkout's
``web/dist``, or one copied beside an installed llmspace); without it the
checkout's ``web/dist`` is used when llmspace runs from one.
"""

from __future__ import annotations

from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]  # the repository root, when running from a source checkout
SOURCE_DIST = CHECKOUT / "web" / "dist"
BUILD = "npm ci && npm run build"


def source_checkout() -> Path | None:
    """The repository root when this llmspace runs from a source checkout (it has ``web/package.json``)."""
    return CHECKOUT if (CHECKOUT / "web" / "package.json").is_file() else None


def web_dist(settings=None) -> Path:
    """The folder the page is served from: ``settings.web_dist``, else the checkout's ``web/dist``."""
    configured = getattr(settings, "web_dist", None)
    return Path(configured).expanduser() if configured else SOURCE_DIST


def missing_page(dist: Path, settings=None) -> str | None:
    """None when ``dist`` holds a built page; else what is missing and the commands that make it."""
    dist = Path(dist)
    if (dist / "index.html").is_file():
        return None
    checkout = source_checkout()
    configured = getattr(settings, "web_dist", None)
    if configured and Path(configured).expanduser() == dist:
        where = f"LLMSPACE_WEB_DIST={dist} has no index.html"
    elif checkout is not None or dist != SOURCE_DIST:
        where = f"{dist / 'index.html'} is missing"
    else:
        where = (f"LLMSPACE_WEB_DIST is not set, and this llmspace is an installed package "
                 f"({Path(__file__).resolve().parents[1]}), which does not include the page")
    if checkout is not None:
        return (f"The browser page is not built: {where}. Build it: `cd {checkout / 'web'} && {BUILD}` "
                "(needs Node.js and npm).")
    return (f"The browser page is not built: {where}. In a source checkout of llmspace run "
            f"`cd web && {BUILD}` (needs Node.js and npm), then set LLMSPACE_WEB_DIST to that web/dist folder.")
