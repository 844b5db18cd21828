"""The dashboard's ASGI application: routes, the pool, rendering and error pages.

Every page handler reads through one read model of `orchestrator.ops` and renders one
template; actions go through `ops.dlq` exactly as `orchestrator dlq` does (same functions, same
transactions). A user's mistake (an unknown pipeline, a malformed run id, a bad filter) is a
page with a one-line message and status 400/404, never a traceback.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

import asyncpg
import orjson
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from orchestrator.db import create_pool
from orchestrator.db.dsn import redact
from orchestrator.errors import NotFound, OrchestratorError, SchemaMissing
from orchestrator.ops.queries import translated_errors
from orchestrator.queue.client import notify_channel
from orchestrator.ui.live import Hub, event
from orchestrator.ui.security import CSRF_COOKIE, Guard, csrf_ok, csrf_token

Handler = Callable[[Request], Awaitable[Response]]


class Dashboard:
    """State shared by the handlers: the pool, the templates, the guard and the live hub."""

    def __init__(self, dsn: str, guard: Guard, local_hashes: Mapping[str, str] | None) -> None:
        self.dsn = dsn
        self.guard = guard
        self.local_hashes = local_hashes
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()
        folder = str(files("orchestrator.ui") / "templates")
        self.templates = Environment(
            loader=FileSystemLoader(folder),
            autoescape=select_autoescape(["html", "svg"], default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["json"] = _pretty_json
        self.templates.filters["short"] = _short
        self.templates.globals["query"] = _query_string
        self.hub: Hub | None = None
        self.root = ""
        """Path the application is mounted at (links in pushed fragments start with it)."""

    async def pool(self) -> asyncpg.Pool:
        """The pool, opened on first use (a mounted application gets no lifespan events)."""
        async with self._pool_lock:
            if self._pool is None:
                self._pool = await create_pool(self.dsn, min_size=0, max_size=5)
            return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def conn(self) -> AsyncIterator[asyncpg.Connection]:
        pool = await self.pool()
        async with pool.acquire() as conn, translated_errors():
            yield conn

    def render(
        self, request: Request, template: str, context: Mapping[str, Any], status: int = 200
    ) -> HTMLResponse:
        token, new = csrf_token(request)
        decision = self.guard.may_act(request)
        html = self.templates.get_template(template).render(
            request=request,
            root=request.scope.get("root_path", ""),
            csrf=token,
            can_act=decision.allowed,
            why_not=decision.reason,
            read_only=self.guard.read_only,
            needs_sign_in=self.guard.needs_credentials and not decision.allowed,
            **context,
        )
        response = HTMLResponse(html, status_code=status)
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        if new:
            response.set_cookie(
                CSRF_COOKIE, token, httponly=True, samesite="strict", path="/", secure=False
            )
        return response

    def page(self, handler: Handler) -> Handler:
        """`handler` with the project's errors turned into a one-line error page."""

        async def wrapped(request: Request) -> Response:
            try:
                return await handler(request)
            except OrchestratorError as exc:
                status = 404 if isinstance(exc, NotFound) else 400
                if isinstance(exc, SchemaMissing):
                    status = 503
                if isinstance(exc, Refused):
                    status = 403
                message = redact(str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
                return self.render(request, "error.html", {"message": message}, status)

        return wrapped

    def overview_hub(self) -> Hub:
        if self.hub is None:
            from orchestrator.ui import pages

            async def compute() -> str:
                return await pages.overview_fragment(self)

            self.hub = Hub(self.dsn, compute, self._channels)
        return self.hub

    async def _channels(self) -> list[str]:
        from orchestrator.state.applied import applied_pipelines

        async with self.conn() as conn:
            pipelines = await applied_pipelines(conn)
        return [notify_channel(q) for p in pipelines for q in p.queue_names()]

    async def events(self, request: Request) -> Response:
        self.root = request.scope.get("root_path", "")
        hub = self.overview_hub()

        async def body() -> AsyncIterator[str]:
            async for fragment in hub.stream():
                if await request.is_disconnected():
                    return
                yield event("overview", fragment)

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


def create_app(
    dsn: str,
    *,
    read_only: bool = False,
    loopback: bool | None = None,
    guard: Guard | None = None,
    local_hashes: Mapping[str, str] | None = None,
) -> Starlette:
    """The dashboard over database `dsn`.

    `loopback`: whether the server is bound to loopback (None: judge each request by its
    client address). `guard` replaces the access rules read from ORCHESTRATOR_UI_TOKEN /
    ORCHESTRATOR_UI_USERS. `local_hashes` (pipeline -> spec hash of its file) marks pipelines
    whose file changed since apply.
    """
    from orchestrator.ui import pages

    rules = guard or Guard.from_environment(read_only=read_only, loopback=loopback)
    board = Dashboard(dsn, rules, local_hashes)
    static = StaticFiles(directory=str(files("orchestrator.ui") / "static"))

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await board.close()

    routes: list[BaseRoute] = [
        Route(path, board.page(pages.bind(board, h)), methods=m) for path, h, m in pages.ROUTES
    ]
    routes += [
        Route("/events/overview", board.events),
        Mount("/static", app=static, name="static"),
    ]
    application = Starlette(routes=routes, lifespan=lifespan)
    application.state.dashboard = board
    return application


def redirect(request: Request, path: str, **params: Any) -> RedirectResponse:
    root = request.scope.get("root_path", "")
    return RedirectResponse(f"{root}{path}{_query_string(**params)}", status_code=303)


def _query_string(**params: Any) -> str:
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


def _pretty_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()


def _short(value: Any, size: int = 120) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= size else text[: size - 1] + "…"


async def form_of(request: Request) -> dict[str, Any]:
    """The POSTed form as a dict (lists for repeated fields); `Refused` when CSRF fails."""
    form = await request.form()
    if not csrf_ok(request, form.get("csrf")):
        raise Refused("the form expired or came from another site (CSRF check failed): reload")
    return {key: form.getlist(key) if key == "ids" else form.get(key) for key in form}


class Refused(OrchestratorError):
    """An action this request may not take."""
