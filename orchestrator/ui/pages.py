"""The dashboard's pages: one handler per page, each one read model of `orchestrator.ops`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.errors import UsageError
from orchestrator.ops import dlq, runs, status, steps, trace, workers
from orchestrator.state.applied import applied_pipelines
from orchestrator.ui import charts, graph
from orchestrator.ui.web import Dashboard, Refused, form_of, redirect

Page = Callable[[Dashboard, Request], Awaitable[Response]]


def bind(board: Dashboard, page: Page) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        return await page(board, request)

    return handler


# -- overview ------------------------------------------------------------------------------


async def overview_fragment(board: Dashboard) -> str:
    """The overview's pipelines (graphs and live numbers), as pushed by the live stream."""
    async with board.conn() as conn:
        context = await _overview(board, conn)
    return board.templates.get_template("_pipelines.html").render(root=board.root, **context)


async def _overview(board: Dashboard, conn: Any) -> dict[str, Any]:
    report = await status.collect_status(conn, local_hashes=board.local_hashes)
    applied = {p.name: p for p in await applied_pipelines(conn)}
    cards = [
        {
            "status": p,
            "layout": graph.layout(applied[p.name]),
            "steps": {s.step: s for s in p.steps},
            "flow": {f.step: f for f in p.flow},
        }
        for p in report.pipelines
        if p.name in applied
    ]
    return {"cards": cards, "measured_at": report.measured_at, "window": report.window}


async def overview(board: Dashboard, request: Request) -> Response:
    async with board.conn() as conn:
        context = await _overview(board, conn)
    return board.render(request, "overview.html", context)


# -- step ----------------------------------------------------------------------------------


async def step_page(board: Dashboard, request: Request) -> Response:
    pipeline, step = request.path_params["pipeline"], request.path_params["step"]
    async with board.conn() as conn:
        activity = await steps.step_activity(conn, pipeline, step)
        report = await status.collect_status(conn, [pipeline])
    numbers = next(s for s in report.pipelines[0].steps if s.step == step)
    context = {
        "activity": activity,
        "numbers": numbers,
        "throughput": charts.throughput(activity.buckets, activity.since),
        "latency": charts.latency(activity.buckets, activity.since),
    }
    return board.render(request, "step.html", context)


# -- runs ----------------------------------------------------------------------------------


async def runs_page(board: Dashboard, request: Request) -> Response:
    params = request.query_params
    run_id = (params.get("run") or "").strip()
    if run_id:
        return redirect(request, f"/runs/{trace.parse_run_id(run_id)}")
    state = params.get("state") or None
    field = (params.get("field") or "").strip()
    before = _number(params.get("before"), "before")
    async with board.conn() as conn:
        names = [p.name for p in await applied_pipelines(conn)]
        pipeline = params.get("pipeline") or (names[0] if names else None)
        page = None
        if pipeline is not None:
            page = await runs.latest_runs(
                conn,
                pipeline,
                before=before,
                state=state,
                payload=runs.parse_payload_filter(field) if field else None,
            )
    context = {
        "pipelines": names,
        "pipeline": pipeline,
        "state": state,
        "states": runs.STATES,
        "field": field,
        "page": page,
    }
    return board.render(request, "runs.html", context)


async def run_page(board: Dashboard, request: Request) -> Response:
    async with board.conn() as conn:
        found = await trace.trace_run(conn, request.path_params["run_id"])
    context = {"trace": found, "timeline": charts.timeline(found.entries, found.measured_at)}
    return board.render(request, "run.html", context)


# -- dead letters --------------------------------------------------------------------------


def _filter_of(values: Any) -> tuple[str | None, dlq.Filter]:
    pipeline = values.get("pipeline") or None
    where = dlq.Filter(step=values.get("step") or None, error=values.get("error") or None)
    return pipeline, where


async def dead_letters_page(board: Dashboard, request: Request) -> Response:
    pipeline, where = _filter_of(request.query_params)
    async with board.conn() as conn:
        names = [p.name for p in await applied_pipelines(conn)]
        pipeline = pipeline or (names[0] if names else None)
        found = await dlq.list_dead_letters(conn, pipeline, where) if pipeline else []
    context = {
        "pipelines": names,
        "pipeline": pipeline,
        "where": where,
        "letters": found,
        "message": request.query_params.get("done"),
    }
    return board.render(request, "dead_letters.html", context)


async def dead_letter_page(board: Dashboard, request: Request) -> Response:
    number = _number(request.path_params["id"], "dead-letter id")
    async with board.conn() as conn:
        letter = await dlq.get_dead_letter(conn, number or 0, request.path_params["pipeline"])
    return board.render(request, "dead_letter.html", {"letter": letter})


async def replay(board: Dashboard, request: Request) -> Response:
    """Replay one, the selection or every match of the filter, after a confirmation."""
    form = await _action_form(board, request)
    pipeline, where = _filter_of(form)
    if pipeline is None:
        raise UsageError("say which pipeline's dead letters to replay")
    ids = tuple(dlq.parse_id(i) for i in form.get("ids") or [])
    everything = form.get("scope") == "matching"
    if not ids and not everything:
        raise UsageError("select the dead letters to replay")
    selection = dlq.Filter(step=where.step, error=where.error, ids=ids or None)
    async with board.conn() as conn:
        if form.get("confirmed") != "yes":
            applied = (await applied_pipelines(conn, [pipeline]))[0]
            count = await dlq.count_dead_letters(conn, applied, selection)
            return _confirm(board, request, "replay", form, count)
        report = await dlq.replay_dead_letters(conn, pipeline, selection, everything=everything)
    left = f", {len(report.left)} left in place" if report.left else ""
    message = f"replayed {len(report.replayed)} dead letter(s) of {pipeline}{left}"
    return redirect(request, "/dead-letters", pipeline=pipeline, done=message)


async def purge(board: Dashboard, request: Request) -> Response:
    """Delete the dead letters of a pipeline (of one step), after a confirmation."""
    form = await _action_form(board, request)
    pipeline, where = _filter_of(form)
    if pipeline is None:
        raise UsageError("say which pipeline's dead letters to purge")
    selection = dlq.Filter(step=where.step)
    async with board.conn() as conn:
        if form.get("confirmed") != "yes":
            applied = (await applied_pipelines(conn, [pipeline]))[0]
            count = await dlq.count_dead_letters(conn, applied, selection)
            return _confirm(board, request, "purge", form, count)
        deleted = await dlq.purge_dead_letters(conn, pipeline, selection)
    message = f"purged {deleted} dead letter(s) of {pipeline}"
    return redirect(request, "/dead-letters", pipeline=pipeline, done=message)


async def _action_form(board: Dashboard, request: Request) -> dict[str, Any]:
    form = await form_of(request)
    decision = board.guard.may_act(request)
    if not decision.allowed:
        raise Refused(decision.reason)
    return form


def _confirm(
    board: Dashboard, request: Request, action: str, form: dict[str, Any], count: int
) -> Response:
    context = {"action": action, "form": form, "count": count}
    return board.render(request, "confirm.html", context)


# -- workers and sign-in -------------------------------------------------------------------


async def workers_page(board: Dashboard, request: Request) -> Response:
    async with board.conn() as conn:
        found = await workers.live_workers(conn)
    return board.render(request, "workers.html", {"workers": found, "alive": workers.ALIVE})


async def sign_in(board: Dashboard, request: Request) -> Response:
    if request.method == "GET":
        return board.render(request, "sign_in.html", {"failed": False})
    form = await form_of(request)
    token = form.get("token")
    if not isinstance(token, str) or not board.guard.token_matches(token):
        return board.render(request, "sign_in.html", {"failed": True}, status=403)
    response = redirect(request, "/dead-letters")
    from orchestrator.ui.security import SESSION_COOKIE

    response.set_cookie(
        SESSION_COOKIE, board.guard.session_value(), httponly=True, samesite="strict", path="/"
    )
    return response


def _number(text: str | None, what: str) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) > dlq.MAX_ID:
        raise UsageError(f"invalid {what} '{text}': expected a number")
    return int(text)


ROUTES: list[tuple[str, Page, list[str]]] = [
    ("/", overview, ["GET"]),
    ("/pipelines/{pipeline}/steps/{step}", step_page, ["GET"]),
    ("/runs", runs_page, ["GET"]),
    ("/runs/{run_id}", run_page, ["GET"]),
    ("/dead-letters", dead_letters_page, ["GET"]),
    ("/dead-letters/replay", replay, ["POST"]),
    ("/dead-letters/purge", purge, ["POST"]),
    ("/dead-letters/{pipeline}/{id}", dead_letter_page, ["GET"]),
    ("/workers", workers_page, ["GET"]),
    ("/sign-in", sign_in, ["GET", "POST"]),
]
