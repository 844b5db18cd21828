"""The web dashboard (`orchestrator ui`): server-rendered pages over the operations' read models.

Owns the ASGI application (Starlette, Jinja2 templates, htmx and its server-sent-events
extension vendored in `static/`, every asset package data), the SVG drawings of step graphs and
charts, live updates (server-sent events fed by LISTEN/NOTIFY and a periodic query) and the
access rules of its actions (token or Basic auth off loopback, read-only mode, CSRF). It reads
and acts only through `orchestrator.ops` (status, trace, dlq, runs, steps, workers): a face
like the CLI, with no queries of its own. Must not import: runtime, compiler, cli.

Mount it in an ASGI application of your own::

    from orchestrator.ui import app
    routes = [Mount("/jobs", app=app(dsn="postgresql://..."))]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette


def app(dsn: str, **options: Any) -> Starlette:
    """The dashboard as an ASGI application (see `orchestrator.ui.app.create_app`)."""
    from orchestrator.ui.web import create_app

    return create_app(dsn, **options)


__all__ = ["app"]
