"""`orchestrator db start | stop | status | url`: the embedded PostgreSQL server.

The server is the project's (`.orchestrator/pgdata` in the project root, or
`$ORCHESTRATOR_HOME/pgdata`); `db status` also lists every other embedded server this user runs.
"""

from __future__ import annotations

import argparse
import json

from orchestrator.db import embedded


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser("db", help="start, stop or inspect the embedded PostgreSQL server")
    actions = db.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    start = actions.add_parser("start", help="start the embedded server (no-op when running)")
    start.set_defaults(func=_start)
    stop = actions.add_parser("stop", help="stop the embedded server")
    stop.set_defaults(func=_stop)
    st = actions.add_parser("status", help="is the embedded server running, and where")
    st.add_argument("--json", action="store_true", help="print JSON")
    st.set_defaults(func=_status)
    url = actions.add_parser("url", help="print the embedded server's URL (starts it if needed)")
    url.set_defaults(func=_url)


def _start(args: argparse.Namespace) -> int:
    uri = embedded.ensure_running()
    print(f"embedded PostgreSQL running: {uri}")
    return 0


def _stop(args: argparse.Namespace) -> int:
    stopped = embedded.stop()
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    st = embedded.status()
    others = [s for s in embedded.servers() if s.pgdata != st.pgdata]
    if args.json:
        print(json.dumps({**_json(st), "others": [_json(s) for s in others]}))
        return 0 if st.running else 1
    if st.running:
        print(f"running  pid {st.pid}  {st.uri}\npgdata   {st.pgdata}")
    else:
        print(f"stopped  (pgdata {st.pgdata})")
    if others:
        print(f"\nother embedded servers of this user ({len(others)}):")
        for other in others:
            print(f"  pid {other.pid}  {other.pgdata}")
        print("stop one with: ORCHESTRATOR_HOME=<the folder above pgdata> orchestrator db stop")
    return 0 if st.running else 1


def _json(st: embedded.ServerStatus) -> dict[str, object]:
    return {"pgdata": str(st.pgdata), "running": st.running, "pid": st.pid, "url": st.uri}


def _url(args: argparse.Namespace) -> int:
    print(embedded.ensure_running())
    return 0
