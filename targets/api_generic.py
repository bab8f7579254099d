r"""Tune your own HTTP service: copy this file anywhere, edit the `target = ApiTarget(...)` lines, run it.

    autoloop run api_generic.py                    (as shipped: tunes the example orders service)

What autoloop needs from you (the lines at the bottom):

    command   how to start one instance; templated per config. {port}: a free 127.0.0.1 port to listen on;
              {scratch}: an empty directory of this instance's own (database copies, caches, sockets),
              deleted when the instance stops; {python}: this interpreter; {state}: the state dir; every
              knob by its name (booleans as true/false). No shell: use "sh -c '...'" if you need one.
              Relative paths are relative to this file's directory (the commands' cwd, unless cwd=...).
    health    a path (or http://127.0.0.1:{port}/path) that answers 200 once the service is ready
    calls     the calls file (below), replayed in order against every instance
    space     the knobs: {"workers": ("int", 1, 8), "cache": ("cat", ["none", "lru"]),
              "ttl_s": ("float", 1.0, 60.0, True)}  (True = log scale)
    baseline  the config you run today; its answers are the correct ones
    concurrency  how many calls are in flight at once while measuring (the score's meaning; below)

The calls file is JSONL, one call per line:

    {"id": "c01", "method": "GET", "path": "/orders?customer=17"}
    {"id": "c02", "method": "POST", "path": "/orders/9/status", "body": {"status": "shipped"}}
    {"id": "c03", "path": "/me", "headers": {"Authorization": "Bearer test-token"}}
    {"id": "c04", "path": "/time", "volatile": true}

Only "path" is required (method GET by default). When the run starts, the baseline replays the calls
twice; its answers (status + JSON body, key order and formatting ignored; `ignore=["request_id"]` drops
keys) become the expected ones, and a candidate config is correct only when every answer is the same.
"volatile": true marks a call whose answer changes by design (only its status is checked); "expect"
pins an answer (see autoloop.services.record_expectations). Every field: autoloop/services/calls.py.
Make the calls from traffic you already have:

    import json
    from autoloop.services import calls_from_access_log, calls_from_har, write_calls
    write_calls("calls.jsonl", calls_from_har("session.har"))          # browser devtools: Save all as HAR
    write_calls("calls.jsonl", calls_from_access_log("access.log", limit=200))  # nginx/Apache/uvicorn log
    # or by hand, from any list of URLs:
    with open("urls.txt") as f, open("calls.jsonl", "w") as out:
        for i, url in enumerate(f.read().split()):
            out.write(json.dumps({"id": f"u{i}", "path": url}) + "\n")

Calls that change data (a payment, a counter, an insert, even made by GET) answer differently on a
second replay. The baseline check catches that and stops before anything is written, naming the calls;
then choose: restart_between_replays=True (every replay on a fresh instance with a fresh {scratch}; the
service must rebuild its data at start, as the example does; every replay then pays a start, so raise
score_budget_s for a service that starts slowly), reset_command="..." (a command templated
like `command`, or "POST /admin/reset", run on each instance before every replay), or "volatile": true.

Options with their defaults: concurrency=1 (calls one at a time, in file order: each latency is the
call's own time, as a sequential client sees it; set k to replay k calls at once, and queueing in your
service then counts too), repeats=8 (replays per comparison), score_repeats=3 (the baseline's), warmup=20
(read calls played once first; with restart_between_replays only the health path is), budget_s=60,
score_budget_s=600, start_timeout_s=60, proposer="tpe" (or "random"), seed=0, n_startup_trials=5,
ignore=[], env={}, cwd=None, scratch_dir=None ($AUTOLOOP_SCRATCH_DIR, else <tmp>/autoloop-scratch).

Each iteration: TPE proposes a config (configs with any wrong answer are infeasible to it; after a keep
that changed several knobs, each is ablated in turn so a knob that only costs is dropped); incumbent
and candidate start side by side, replay the calls `repeats` times interleaved, and the engine keeps
the candidate only when the 95% block-bootstrap interval of p95(candidate)/p95(incumbent) lies below
0.95 and no answer is wrong. `autoloop show` lists config, p95, p95_ratio (candidate/incumbent, measured
side by side: the number to read on a busy machine), p50, correctness and concurrency.
"""
from autoloop.services import ApiTarget
from autoloop.services.example import CALLS as EXAMPLE_CALLS

target = ApiTarget(
    name="orders",
    command="{python} -m autoloop.services.example.orders --port {port} --db {scratch}/orders.sqlite "
            "--index {index} --cache {cache} --threads {threads} --sync-log {sync_log}",
    health="/health",
    calls=EXAMPLE_CALLS,  # yours: calls="calls.jsonl" (relative to this file)
    space={"index": ("cat", [False, True]), "cache": ("cat", ["none", "lru", "stale"]),
           "threads": ("int", 1, 4), "sync_log": ("cat", [False, True])},
    baseline={"index": False, "cache": "none", "threads": 1, "sync_log": False},
    concurrency=1,  # calls in flight at once: 1 = the score is the p95 a sequential client sees
    restart_between_replays=True,  # the example's GET /pay?order= changes data: remove this line to see the check
)
