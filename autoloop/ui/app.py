"""`autoloop ui`: a read-only web dashboard over the run history (Starlette app, served by uvicorn).

Pages: `/` (runs, several overlaid on one curve) and `/run/<run_id>` (curves over iterations and wall time,
components on their own axes, the iterations table, a candidate's diff and per-item changes, LLM spend, and
while a batch runs, its members in flight per node: autoloop.members, the file `autoloop status` reads).
The pages draw themselves from the JSON under `/api/` and poll `/api/version` (a stat of the history file
and of live.json) to redraw when the loop writes. Every route is GET: nothing here writes. The chart
library (uPlot, MIT) ships in `static/`, so the page works offline.
"""
from __future__ import annotations

import contextlib
import html
import json
import math
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from autoloop.ui.data import Dashboard, HistoryUnavailable

STATIC = Path(__file__).resolve().parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Everything comes from this server: no CDN, no inline script, nothing framed.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
}


class _CachedStatic(StaticFiles):
    """Static files under versioned URLs (?v=...): cached by the browser until the package changes."""

    def file_response(self, *args: Any, **kw: Any) -> Response:
        resp = super().file_response(*args, **kw)
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp


class _JSON(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=_default, allow_nan=False, separators=(",", ":")).encode()


def _default(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return str(v)


def _static_version() -> str:
    """Part of every static URL: it changes when a file changes, so browsers may cache them for good."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(STATIC.iterdir()):
        h.update(p.name.encode() + str(p.stat().st_mtime_ns).encode() + str(p.stat().st_size).encode())
    return h.hexdigest()[:12]


_V = _static_version()


def _page(title: str, body: str, status_code: int = 200, page: str = "", data: dict | None = None,
          preload: str = "") -> HTMLResponse:
    attrs = f' data-page="{html.escape(page)}"' if page else ""
    # The page's data is requested while the scripts load and compile, not after (app.js picks it up).
    pre = f'<link rel="preload" href="{html.escape(preload)}" as="fetch" crossorigin="anonymous">' if preload else ""
    for k, v in (data or {}).items():
        attrs += f' data-{k}="{html.escape(str(v))}"'
    scripts = (f'<script src="/static/uPlot.iife.min.js?v={_V}"></script><script src="/static/app.js?v={_V}"></script>'
               if page else "")
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · autoloop</title>
<link rel="stylesheet" href="/static/uPlot.min.css?v={_V}"><link rel="stylesheet" href="/static/app.css?v={_V}">
<link rel="icon" href="data:,">{pre}</head>
<body{attrs}><header><a href="/" class="home">autoloop</a> <span class="crumb">{html.escape(title)}</span>
<span id="live" class="live"></span></header>
<main>{body}</main>{scripts}</body></html>"""
    return HTMLResponse(doc, status_code=status_code, headers=_HEADERS)


def _message(title: str, text: str, status_code: int) -> HTMLResponse:
    return _page(title, f'<section class="message"><h1>{html.escape(title)}</h1><p>{html.escape(text, quote=False)}</p>'
                        '<p><a href="/">all runs</a></p></section>', status_code)


def create_app(runs_dir: Path, host: str = "127.0.0.1") -> Starlette:
    dash = Dashboard(Path(runs_dir))

    def stamped(request: Request) -> dict[str, str]:
        # Taken before the data is read: the page redraws on any later change (see app.js watch()).
        rid = request.path_params.get("run_id") or request.query_params.get("run")
        return dict(_HEADERS, **{"X-Autoloop-Version": dash.version(rid)})

    def api(fn):
        def endpoint(request: Request) -> Response:
            headers = stamped(request)
            return _JSON(fn(request), headers=headers)
        return endpoint

    def index(request: Request) -> Response:
        dash.runs()  # a missing, unreadable or newer history becomes a message page here
        return _page("runs", RUNS_BODY, page="runs", data={"runs-dir": str(dash.runs_dir)})

    def run_page(request: Request) -> Response:
        rid = request.path_params["run_id"]
        run = dash.run(rid)
        if run is None:
            raise HTTPException(404, f"no run {rid!r} in {dash.runs_dir}")
        return _page(rid, RUN_BODY, page="run", data={"run": rid}, preload=f"/api/runs/{quote(rid)}")

    def _need_run(rid: str) -> None:
        if dash.run(rid) is None:
            raise HTTPException(404, f"no run {rid!r} in {dash.runs_dir}")

    def api_version(request: Request) -> dict:
        return {"version": dash.version(request.query_params.get("run"))}

    def api_runs(request: Request) -> list:
        return dash.runs()

    def api_run(request: Request) -> Response:
        headers = stamped(request)
        text = dash.run_detail_json(request.path_params["run_id"])
        if text is None:
            raise HTTPException(404, f"no run {request.path_params['run_id']!r}")
        return Response(text, media_type="application/json", headers=headers)

    def api_iter(request: Request) -> dict:
        rid, n = request.path_params["run_id"], request.path_params["n"]
        d = dash.candidate(rid, n)
        if d is None:
            raise HTTPException(404, f"no iteration {n} in run {rid!r}")
        return d

    def api_llm(request: Request) -> dict:
        _need_run(request.path_params["run_id"])
        return dash.llm(request.path_params["run_id"])

    def api_curves(request: Request) -> list:
        return dash.curves(request.query_params.getlist("run")[:20])

    async def not_found(request: Request, exc: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return _JSON({"error": exc.detail}, status_code=exc.status_code, headers=_HEADERS)
        if exc.status_code == 404:
            return _message("not found", str(exc.detail) if exc.detail != "Not Found" else
                            f"nothing at {request.url.path}", 404)
        return _message(f"error {exc.status_code}", str(exc.detail), exc.status_code)

    async def unavailable(request: Request, exc: HistoryUnavailable) -> Response:
        if request.url.path.startswith("/api/"):
            return _JSON({"error": exc.message}, status_code=exc.status_code, headers=_HEADERS)
        return _message("history unavailable", exc.message, exc.status_code)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/run/{run_id:str}", run_page, methods=["GET"]),
        Route("/api/version", api(api_version), methods=["GET"]),
        Route("/api/runs", api(api_runs), methods=["GET"]),
        Route("/api/runs/{run_id:str}", api_run, methods=["GET"]),
        Route("/api/runs/{run_id:str}/iter/{n:int}", api(api_iter), methods=["GET"]),
        Route("/api/runs/{run_id:str}/llm", api(api_llm), methods=["GET"]),
        Route("/api/curves", api(api_curves), methods=["GET"]),
        Mount("/static", _CachedStatic(directory=STATIC), name="static"),
    ]
    middleware = []
    if host in LOOPBACK:  # a page on another site cannot reach this one by DNS rebinding
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "::1", "[::1]"]))
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        yield
        dash.close()

    app = Starlette(routes=routes, middleware=middleware,
                    exception_handlers={HTTPException: not_found, HistoryUnavailable: unavailable},
                    lifespan=lifespan)
    app.state.dashboard = dash
    return app


def serve(runs_dir: Path, host: str = "127.0.0.1", port: int = 8765, echo=print) -> None:
    import uvicorn

    if host not in LOOPBACK:
        echo(f"warning: --host {host}: the dashboard has no login; anyone who can reach this machine on port "
             f"{port} can read every run's history, params and diffs. Bind 127.0.0.1 (the default) unless "
             "that is what you want.")
    shown = f"[{host}]" if ":" in host else host
    echo(f"autoloop ui: http://{shown}:{port}/  (runs dir {runs_dir}; read-only; Ctrl-C stops)")
    uvicorn.run(create_app(runs_dir, host), host=host, port=port, log_level="warning", access_log=False)


RUNS_BODY = """
<section class="intro"><h1>Runs</h1><p class="muted" id="runs-dir"></p></section>
<section><table id="runs" class="grid"><thead></thead><tbody></tbody></table>
<p class="muted">Tick runs to overlay their curves below.</p></section>
<section class="chart-box"><div class="chart-head"><h2>Overlay</h2>
<label>x: <select id="overlay-x"><option value="iter">iteration</option><option value="time">wall time</option></select></label>
<label><input type="checkbox" id="overlay-points" checked> every score</label></div>
<div id="overlay" class="chart"></div></section>
"""

RUN_BODY = """
<section class="intro"><h1 id="title"></h1><div id="summary" class="summary"></div></section>
<section id="members-box" hidden><h2>Members in flight <span class="muted">(per node, as <code>autoloop status</code> shows them)</span></h2>
<table id="members" class="grid"><thead><tr><th>node</th><th>member</th><th>phase</th><th>elapsed</th></tr></thead>
<tbody></tbody></table></section>
<section class="chart-box"><div class="chart-head"><h2 id="score-title">score</h2>
<label>x: <select id="x-axis"><option value="iter">iteration</option><option value="time">wall time</option></select></label>
<span class="muted">click a point to open that candidate</span></div>
<div id="score-chart" class="chart"></div><div id="legend-kinds" class="kinds"></div></section>
<section class="chart-box"><h2>Components <span class="muted">(each on its own axis)</span></h2>
<div id="components" class="small-multiples"></div></section>
<section class="chart-box" id="llm-box" hidden><h2>LLM calls and dollars over time</h2>
<div id="llm-chart" class="chart"></div><div id="llm-models"></div></section>
<section id="candidate" class="candidate" hidden></section>
<section><h2>Iterations <span class="muted">(newest first; click one to open it)</span></h2>
<div class="table-wrap"><table id="iters" class="grid"><thead></thead><tbody></tbody></table></div>
<button id="iters-more" type="button" hidden></button></section>
"""
