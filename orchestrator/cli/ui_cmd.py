"""`orchestrator ui`: serve the web dashboard (orchestrator.ui) with uvicorn."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Iterator

from orchestrator.cli import add_dsn_option, add_pipelines_option
from orchestrator.errors import ConfigError, UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ui = sub.add_parser(
        "ui",
        help="serve the web dashboard",
        description=(
            "Serve the dashboard: pipelines with live counts, steps, runs, dead letters and "
            "workers. Actions (replay, purge) need ORCHESTRATOR_UI_TOKEN or "
            "ORCHESTRATOR_UI_USERS when bound to anything but loopback."
        ),
    )
    add_dsn_option(ui)
    add_pipelines_option(ui)
    ui.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    ui.add_argument("--port", type=_port, default=8765, help="port (default 8765)")
    ui.add_argument("--read-only", action="store_true", help="no actions: look, never touch")
    ui.set_defaults(func=_serve)


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, stopped by SIGINT or SIGTERM with exit status 0: stopping the
        dashboard is its normal end, not an interruption."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            previous = {s: signal.signal(s, self.handle_exit) for s in _STOP_SIGNALS}
            try:
                yield
            finally:
                for number, handler in previous.items():
                    signal.signal(number, handler)

    return Server


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"invalid port '{text}': expected 1-65535")
    return int(text)


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from orchestrator.cli.ops_cmd import _local_hashes
    from orchestrator.db import resolve_dsn
    from orchestrator.ui.security import Guard, is_loopback
    from orchestrator.ui.web import create_app

    dsn = resolve_dsn(args.dsn)
    asyncio.run(_check_database(dsn))
    loopback = is_loopback(args.host)
    guard = Guard.from_environment(read_only=args.read_only, loopback=loopback)
    if not loopback and not guard.needs_credentials and not args.read_only:
        print(
            "orchestrator ui: bound off loopback without ORCHESTRATOR_UI_TOKEN or "
            "ORCHESTRATOR_UI_USERS: actions are disabled"
        )
    app = create_app(dsn, guard=guard, local_hashes=_local_hashes(args.pipelines))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"orchestrator ui: http://{shown}:{args.port}/", flush=True)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=2,
        lifespan="on",
    )
    server = _server_class()(config)
    try:
        server.run()
    except SystemExit as exc:  # uvicorn exits when it cannot bind
        raise ConfigError(f"cannot serve on {args.host}:{args.port}") from exc
    if not server.started:
        raise UsageError(f"cannot serve on {args.host}:{args.port} (address in use?)")
    return 0


async def _check_database(dsn: str) -> None:
    """Fail with one line before serving when the database is unreachable or not applied."""
    from orchestrator.db import connect
    from orchestrator.ops.queries import translated_errors
    from orchestrator.state import ensure_prepared

    conn = await connect(dsn)
    try:
        async with translated_errors():
            await ensure_prepared(conn)
    finally:
        await conn.close()
