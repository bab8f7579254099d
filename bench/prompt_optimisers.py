"""autoloop's prompt loop vs DSPy (BootstrapFewShotWithRandomSearch) and GEPA, on equal inputs and equal calls.

    nice -n 5 python bench/prompt_optimisers.py                      # the full table (hours on a busy 2-core CPU)
    python bench/prompt_optimisers.py --budgets 24 --seeds 0 --test 8 --select 8 --library off   # smoke
    python bench/prompt_optimisers.py ... --resume      # continue a stopped invocation (same options)
    python bench/prompt_optimisers.py ... --jobs 2      # (seed, setting) groups in parallel processes

What every arm gets (the same, by construction):
- the task model: one local mlx_lm.server with the bundled SmolLM2-135M (temperature 0, max_tokens 128), or
  with `--task-model anthropic:MODEL` (and ANTHROPIC_API_KEY) that API model behind a counting proxy on
  127.0.0.1, through which every arm's task calls go (our arm's proposer stays the offline one either way);
- the training rows to draw demos from: all of targets/sfia/data/train.jsonl (shuffled per seed for the
  peers, whose random search depends on the order; our proposer is seeded by SFIA_PROMPT_SEED);
- the selection rows: `--select` gold items (the engine splits them into its feedback and keep-decision
  halves; DSPy and GEPA use them as valset); the final *test* rows (`--test`) are disjoint and never seen
  during optimisation;
- the task description (SYSTEM_PROMPT) and, per setting, the instruction library or not (`--library`):
  ours may append any library sentence; DSPy's instruction is the base plus all library sentences (its random
  search does not edit instructions); GEPA starts from that instruction and its reflection may rewrite it;
- caches: each tool's own response cache, fresh per run (autoloop's SQLite cache; DSPy's memory+disk cache,
  which GEPA's DSPy integration uses too); the final test scoring bypasses them for every arm (a program whose
  exact test requests were answered earlier in the invocation reuses those temperature-0 replies);
- calls: chat completions the model server answered. Ours: the engine's history (llm_calls, cache misses,
  in DuckDB); peers: the bench's server access log (warm-up excluded). GEPA's reflection model runs on a
  second server, so its calls are reported apart ("refl") and are not charged to the task budget.

Our arm is the real engine: `python -m autoloop run targets/sfia_prompt.py` in a child process with its own
runs dir, keep rule (paired bootstrap) and history. It is stopped (--stop-file) once it has used the largest
budget; the prompt for budget B is the engine's incumbent after the last iteration whose cumulative calls
stay within B, read from DuckDB. GEPA is read the same way from its candidate log (the metric-call count at
which it found each candidate), DSPy from the server count at the end of each candidate's valset pass; both
are sized for the largest budget (GEPA: max_metric_calls; DSPy: num_candidate_programs, and its LM refuses
requests past the budget because bootstrapping may walk many training rows).

Peers' output format: a raw-text signature (`input -> reply`) whose adapter sends exactly the messages our
target sends (system instruction, demos as user/assistant turns) and hands the whole completion to the same
scorer, or DSPy's JSONAdapter with the task's own fields (skills, rationale). `--adapter auto` tries both on
`--adapter-probe` selection items with a 3-demo program and keeps the better (the choice is printed).

Offline, GEPA's reflection model is the same 135M model: it cannot read feedback and write a better
instruction the way GEPA intends, so the offline GEPA row measures GEPA's search with a very weak reflector.
With ANTHROPIC_API_KEY set, a second GEPA row uses $BENCH_REFLECTION_MODEL (default
anthropic/claude-sonnet-4-5) as reflector; the task model stays the local one. Without the key that row is
skipped with a note. No code path here reaches the internet otherwise (litellm's cost map is local).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "targets")]
RESULTS = ROOT / "bench" / "results" / "prompt_optimisers.txt"

# Offline by construction: litellm must not fetch its price map, DSPy/litellm must not report telemetry.
for _k, _v in {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False", "DSP_CACHEBOOL": "True",
               "DISABLE_AIOHTTP_TRANSPORT": "True", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}.items():
    os.environ.setdefault(_k, _v)

MAX_TOKENS = 128  # the target's max_tokens (targets/sfia_prompt.py)
MAX_DEMOS = 3  # the target's max_demos
CONCURRENCY = 8  # the target's concurrency
TIMEOUT_S = 1800  # per request, for every arm: on a CPU shared with a training run a reply can take minutes


def run_groups(args, kind: str, seeds: list[int], libs: list[str], arms: list[str], rows: list[dict], record) -> None:
    """--jobs N: each unfinished (seed, setting, arm) optimiser run is this script for that seed, setting and arm
    alone (its own servers, the parent's adapter choice), N at a time, writing under <out>.groups/; its rows join
    the table when it ends. One run per process, not one (seed, setting) group: the last group of a long
    invocation no longer runs its three arms one after another on one core while the other stays idle. A stopped
    invocation loses nothing finished: --resume takes the rows the runs wrote (also those of whole-group files
    that earlier versions wrote) and runs only what is left."""
    groups_dir = args.out.with_suffix(".groups")
    (groups_dir / "memo").mkdir(parents=True, exist_ok=True)
    have = {(r["seed"], r["library"], arm_key(r["arm"]), r.get("budget")) for r in rows}

    def take(path: Path) -> None:
        for r in (json.loads(x) for x in (path.read_text().splitlines() if path.exists() else []) if x.strip()):
            k = (r["seed"], r["library"], arm_key(r["arm"]), r.get("budget"))
            if "error" not in r and k not in have:
                have.add(k)
                record([r], r["library"], r["seed"])

    base = [a for a in sys.argv[1:] if a != "--resume"]
    todo = []
    for seed in seeds:
        for lib in libs:
            take(groups_dir / f"s{seed}-{lib}.jsonl")  # a whole group's rows, from an earlier version's --jobs
            for arm in arms:
                out = groups_dir / f"s{seed}-{lib}-{arm}.txt"
                take(out.with_suffix(".jsonl"))  # rows of a run that ended in an earlier, stopped invocation
                if any(h[:3] == (seed, lib, arm) for h in have):
                    continue
                argv = [sys.executable, str(Path(__file__).resolve()), *base, "--seeds", str(seed), "--library", lib,
                        "--arms", arm, "--adapter", kind, "--jobs", "1", "--memo-dir", str(groups_dir / "memo"),
                        "--out", str(out)]
                todo.append((f"seed {seed} library {lib} arm {arm}", argv, out))
    running: list[tuple] = []
    while todo or running:
        while todo and len(running) < args.jobs:
            name, argv, out = todo.pop(0)
            log = open(out.with_suffix(".log"), "ab")
            print(f"{name}: started ({out.with_suffix('.log')})", flush=True)
            running.append((name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT)), out, log))
        time.sleep(5)
        for item in [g for g in running if g[1].poll() is not None]:
            name, proc, out, log = item
            running.remove(item)
            log.close()
            take(out.with_suffix(".jsonl"))
            if proc.returncode != 0:
                tail = out.with_suffix(".log").read_text(errors="replace")[-400:]
                seed, lib = int(name.split()[1]), name.split()[3]
                record([{"arm": "group", "error": f"{name}: exited {proc.returncode}: {tail}"}], lib, seed)
            print(f"{name}: ended ({proc.returncode})", flush=True)


def _what(command: str) -> list[str]:
    """A command's options without where it writes and how it is spread (--out, --jobs, --memo-dir): what a
    --resume must match."""
    how = ("--out", "--jobs", "--memo-dir")
    words, out = shlex.split(command), []
    skip = False
    for w in words:
        if skip or w.startswith(tuple(h + "=" for h in how)):
            skip = False
            continue
        if w in how:
            skip = True
            continue
        out.append(w)
    return out


def arm_key(name: str) -> str:
    """ours | dspy | gepa, from a row's arm name (or the key itself, in an error row)."""
    return "ours" if name.startswith(("autoloop", "ours")) else name.split()[0]


def die(line: str) -> None:
    """Bad input: one line naming the option and the fix, exit code 2 (the project's rule)."""
    print(line, file=sys.stderr)
    sys.exit(2)


# ------------------------------------------------------------------------------------------------- data
def load_data(args) -> dict[str, Any]:
    from sfia import GOLD_PATH, TRAIN_PATH
    from sfia.prompting import SYSTEM_PROMPT, load_jsonl
    from sfia_prompt import instruction_library

    gold = load_jsonl(GOLD_PATH)
    order = random.Random(f"bench-split:{args.split_seed}").sample(gold, len(gold))
    if args.select + args.test > len(order):
        die(f"--select {args.select} + --test {args.test} > {len(order)} gold rows in {GOLD_PATH}; lower them")
    return {"select": order[: args.select], "test": order[args.select: args.select + args.test],
            "train": load_jsonl(TRAIN_PATH), "base": SYSTEM_PROMPT, "library": instruction_library()}


def score(text: str, row: dict) -> float:
    from sfia.forge_score import reward_components

    return float(reward_components(text or "", row)["forge_score"])


def messages(instruction: str, demos: list[tuple[str, str]], text: str) -> list[dict[str, str]]:
    from sfia.prompting import build_messages

    return build_messages(text, system=instruction, demos=demos)


# ------------------------------------------------------------------------------------------------- server
class Server:
    """One mlx_lm.server; `count()` is the number of chat completions its access log shows."""

    kind = "local"

    def __init__(self, tmp: Path, name: str):
        from autoloop.llm.local_server import LocalModelServer
        from autoloop.mlx.models import resolve_model

        self.folder = resolve_model("smollm2")
        self.log = tmp / f"{name}.log"
        self.srv = LocalModelServer(self.folder, max_tokens=1024, log_path=self.log).start()
        self.base_url = self.srv.base_url
        self.warm = self.count()  # the 1-token warm-up request

    def count(self) -> int:
        return self.log.read_text(errors="replace").count("POST /v1/chat/completions") if self.log.exists() else 0

    def stop(self) -> None:
        self.srv.stop()


_TEST_REPLIES: dict[str, list[str]] = {}  # the exact test requests -> the server's replies, for this invocation
MEMO_DIR: list[str] = []  # with --jobs: the folder where the parallel jobs share those replies


class AnthropicEndpoint:
    """A real API model as the task model: a counting proxy on 127.0.0.1 in front of Anthropic (or
    $ANTHROPIC_BASE_URL). Every arm's task calls go through it, so they are counted at one place, as the
    local server's log counts them: `count()` is the POST /v1/messages for `model` it answered."""

    kind = "anthropic"

    def __init__(self, model: str):
        import http.client
        import urllib.parse
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.model = model
        self.upstream = urllib.parse.urlsplit(os.environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com")
        up, lock, counts = self.upstream, threading.Lock(), {"task": 0, "other": 0}
        self._counts = counts
        hop = {"host", "connection", "keep-alive", "transfer-encoding", "proxy-connection", "content-length"}

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                conn_cls = http.client.HTTPSConnection if up.scheme == "https" else http.client.HTTPConnection
                conn = conn_cls(up.netloc, timeout=TIMEOUT_S)
                try:
                    conn.request(self.command, up.path.rstrip("/") + self.path, body=body or None,
                                 headers={k: v for k, v in self.headers.items() if k.lower() not in hop})
                    resp = conn.getresponse()
                    data = resp.read()
                finally:
                    conn.close()
                if self.command == "POST" and self.path.split("?")[0].endswith("/v1/messages") and resp.status == 200:
                    try:
                        which = "task" if json.loads(body).get("model") == model else "other"
                    except ValueError:
                        which = "other"
                    with lock:
                        counts[which] += 1
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in hop:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_GET = _relay

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, name="count-proxy", daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def count(self) -> int:
        return self._counts["task"]

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None


def test_score(server: Server, reqs: list[list[dict[str, str]]], rows: list[dict], parse=lambda t: t) -> float:
    """Mean forge_score on the test rows, concurrently, through autoloop's HTTP client, no response cache.
    A program whose exact test requests were already answered in this invocation (the same instruction and
    demos, e.g. GEPA's unedited seed program in every run) reuses those replies: at temperature 0 the server
    would answer the same, and every arm gets the same reuse. Its calls are never charged to any budget."""
    key = json.dumps(reqs, sort_keys=True)
    if key not in _TEST_REPLIES:
        import hashlib

        memo = Path(MEMO_DIR[0]) / (hashlib.sha256(key.encode()).hexdigest() + ".json") if MEMO_DIR else None
        if memo and memo.exists():  # answered by a parallel job of this invocation (--jobs)
            _TEST_REPLIES[key] = json.loads(memo.read_text())
        else:
            _TEST_REPLIES[key] = _ask(server, reqs)
            if memo:
                tmp = memo.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(_TEST_REPLIES[key]))
                tmp.replace(memo)
    return statistics.fmean(score(parse(t), row) for t, row in zip(_TEST_REPLIES[key], rows))


def _ask(server: Server, reqs: list[list[dict[str, str]]]) -> list[str]:
    from autoloop.llm.openai_compat import OpenAICompatClient
    from autoloop.llm.types import LLMRequest

    if getattr(server, "kind", "local") == "anthropic":
        from autoloop.llm.anthropic_client import AnthropicClient

        client: Any = AnthropicClient(server.model, base_url=server.base_url, max_concurrency=CONCURRENCY, cache=False)
    else:
        client = OpenAICompatClient(server.base_url, model_id="local:smollm2", max_concurrency=CONCURRENCY,
                                    cache=False, timeout_s=TIMEOUT_S)
    try:
        lreqs = []
        for i, msgs in enumerate(reqs):
            system = msgs[0]["content"] if msgs[0]["role"] == "system" else ""
            lreqs.append(LLMRequest(system=system, messages=msgs[1:] if system else msgs, max_tokens=MAX_TOKENS,
                                    temperature=0.0, tag=str(i)))
        res = client.complete_many(lreqs)
    finally:
        getattr(client, "close", lambda: None)()
    failed = sum(not r.ok for r in res)
    if failed:
        raise RuntimeError(f"{failed}/{len(res)} test calls failed; not scored")
    return [r.text or "" for r in res]


# ------------------------------------------------------------------------------------------------- ours
def run_ours(data, server: Server, args, seed: int, library: bool, tmp: Path) -> list[dict]:
    """The engine, through its CLI only, then the best prompt per budget read from its DuckDB history."""
    import duckdb

    work = tmp / f"ours-{'lib' if library else 'nolib'}-s{seed}"
    runs = work / "runs"
    runs.mkdir(parents=True)
    gold = work / "select.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in data["select"]))
    stop = work / "STOP"
    api = server.kind == "anthropic"
    env = {k: v for k, v in os.environ.items() if api or k != "ANTHROPIC_API_KEY"}  # a local task model: all local
    if api:  # the task model through the counting proxy; the proposer stays the offline one, as with a local model
        env.update(ANTHROPIC_BASE_URL=server.base_url, AUTOLOOP_TASK_MODEL=server.model, SFIA_PROMPT_PROPOSER="offline")
    env.update(AUTOLOOP_RUNS_DIR=str(runs), SFIA_PROMPT_GOLD=str(gold), AUTOLOOP_LLM_TIMEOUT_S=str(TIMEOUT_S),
               SFIA_PROMPT_RUN_S=str(4 * TIMEOUT_S), SFIA_PROMPT_SCORE_S=str(4 * TIMEOUT_S),
               SFIA_PROMPT_LIBRARY="1" if library else "0", SFIA_PROMPT_SEED=str(seed),
               SFIA_PROMPT_HELDOUT_N="0", SFIA_PROMPT_FEEDBACK_N="0", SFIA_PROMPT_SCREEN_N=str(args.screen))
    cmd = [sys.executable, "-m", "autoloop", "run", str(ROOT / "targets" / "sfia_prompt.py"), "--new",
           "--run-id", "bench", "--max-iters", "10000", "--patience", "10000", "--stop-file", str(stop),
           "--no-progress", "--progress-every", "0"]
    top = max(args.budgets)
    t0, n0 = time.time(), server.count()

    def spent() -> int:  # task calls the model answered during this run: the proxy's count, or the servers' logs
        if api:
            return server.count() - n0
        # Every server start makes one 1-token warm-up request after its first successful health check.
        return sum(t.count("POST /v1/chat/completions") - t.count('"GET /health HTTP/1.1" 200')
                   for t in (p.read_text(errors="replace") for p in runs.rglob("mlx_server.log")))

    with open(work / "engine.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            while proc.poll() is None:  # stop the loop once it has spent the largest budget
                if spent() >= top and not stop.exists():
                    stop.write_text("budget\n")
                time.sleep(2)
        except BaseException:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            raise
    wall = time.time() - t0
    if proc.returncode not in (0, None):
        tail = (work / "engine.log").read_text(errors="replace")[-1500:]
        raise RuntimeError(f"autoloop run exited {proc.returncode}:\n{tail}")
    server_calls = spent()
    con = duckdb.connect(str(runs / "history.duckdb"), read_only=True)
    its = con.execute("""SELECT i.iter, i.status, i.score, i.info,
                                (SELECT count(*) FROM llm_calls c WHERE c.run_id = i.run_id AND c.iter = i.iter
                                 AND NOT c.cache_hit AND c.status = 'ok') AS calls
                         FROM iterations i WHERE i.run_id = 'bench' AND i.status <> 'running' ORDER BY i.iter""").fetchall()
    con.close()
    by_id = {str(r["id"]): r for r in data["train"]}
    out, cum, seen = [], 0, {}
    timeline = []
    for it, status, sc, info, calls in its:
        cum += int(calls)
        timeline.append((it, status, cum, sc, json.loads(info or "{}").get("prompt") if status == "keep" else None))
    for b in sorted(args.budgets):
        inc = None
        for it, status, cum, sc, prompt in timeline:
            if cum > b:
                break
            if status == "keep":
                inc = (it, cum, sc, prompt)
        if inc is None:
            out.append({"arm": "autoloop engine", "budget": b, "skipped": f"baseline alone needs {timeline[0][2]} calls"})
            continue
        it, _, sc, prompt = inc
        used = max(c for _, _, c, _, _ in timeline if c <= b)
        key = json.dumps([prompt["instruction"], prompt["demo_ids"]])
        if key not in seen:
            demos = [(by_id[d]["input"], by_id[d]["reply"]) for d in prompt["demo_ids"] if d in by_id]
            seen[key] = test_score(server, [messages(prompt["instruction"], demos, r["input"]) for r in data["test"]],
                                   data["test"])
        out.append({"arm": "autoloop engine", "budget": b, "calls": used, "select": sc, "test": seen[key],
                    "iters": sum(1 for t in timeline if t[2] <= b) - 1, "kept_iter": it,
                    "demos": len(prompt["demo_ids"]), "edits": prompt.get("edits", []), "wall_s": round(wall),
                    "history_calls_total": timeline[-1][2], "server_calls_total": server_calls})
    return out


# ------------------------------------------------------------------------------------------------- DSPy / GEPA
def dspy_setup(server: Server, cache_dir: Path, limit: int | None = None):
    """DSPy's LM on the task server, its caches on and fresh. With `limit`, requests past that many server
    calls raise instead of being sent: BootstrapFewShot walks the training rows until a demo passes the
    metric, which with thousands of rows and a weak model could cost far more than any budget here."""
    import dspy

    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=str(cache_dir))
    n0 = server.count()

    class CappedLM(dspy.LM):
        def _check(self) -> None:
            if limit is not None and server.count() - n0 >= limit:
                raise RuntimeError(f"call budget of {limit} spent")

        def __call__(self, *a, **k):
            self._check()
            return super().__call__(*a, **k)

        def forward(self, *a, **k):
            self._check()
            return super().forward(*a, **k)

    if server.kind == "anthropic":
        lm = CappedLM(f"anthropic/{server.model}", api_base=server.base_url, temperature=0.0, max_tokens=MAX_TOKENS,
                      cache=True, num_retries=3, timeout=TIMEOUT_S)
    else:
        lm = CappedLM("openai/default_model", api_base=server.base_url + "/v1", api_key="local", temperature=0.0,
                      max_tokens=MAX_TOKENS, cache=True, num_retries=3, timeout=TIMEOUT_S)
    return dspy, lm


def make_program(kind: str, instruction: str):
    """(module, adapter, parse completion -> the reply text our scorer reads, to_example(row))."""
    import dspy

    if kind == "text":
        class RawText(dspy.Adapter):
            """Exactly our target's messages: instruction as system, demos as user/assistant turns; no markers."""

            def format(self, signature, demos, inputs):
                ds = [(d["input"], d["reply"]) for d in demos if d.get("input") and d.get("reply")]
                return messages(signature.instructions, ds, inputs["input"])

            def parse(self, signature, completion):
                return {"reply": completion}

        sig = dspy.Signature("input: str -> reply: str", instruction)
        return dspy.Predict(sig), RawText(), (lambda t: t), \
            (lambda r, lab=True: dspy.Example(input=r["input"], reply=r.get("reply", "") if lab else "").with_inputs("input"))

    adapter = dspy.JSONAdapter()
    sig = dspy.Signature({"input": (str, dspy.InputField(desc="the text")),
                          "skills": (list[dict], dspy.OutputField(desc='[{"code": "ABCD", "level": 1-7, "evidence": "phrase from the text"}]')),
                          "rationale": (str, dspy.OutputField(desc="brief"))}, instruction)

    def parse(text: str) -> str:
        try:
            v = adapter.parse(sig, text)
            return json.dumps({"skills": v.get("skills"), "rationale": v.get("rationale")})
        except Exception:  # noqa: BLE001 - unparseable: the raw text goes to the scorer (it finds JSON itself)
            return text

    def example(r, lab=True):
        rep = json.loads(r["reply"]) if lab and r.get("reply") else {"skills": [], "rationale": ""}
        return dspy.Example(input=r["input"], skills=rep.get("skills"), rationale=rep.get("rationale")).with_inputs("input")

    return dspy.Predict(sig), adapter, parse, example


def pred_reply(kind: str, pred) -> str:
    if kind == "text":
        return pred.reply or ""
    return json.dumps({"skills": pred.skills, "rationale": pred.rationale})


def program_test(server, kind, prog, adapter, parse, data) -> float:
    pred = prog.predictors()[0]
    reqs = [adapter.format(pred.signature, pred.demos, {"input": r["input"]}) for r in data["test"]]
    return test_score(server, reqs, data["test"], parse)


def choose_adapter(data, server, args, instruction: str) -> tuple[str, str]:
    if args.adapter != "auto":
        return args.adapter, "set by --adapter"
    rows = data["select"][: args.adapter_probe]
    demos = random.Random("probe").sample(data["train"], MAX_DEMOS)
    got = {}
    for kind in ("text", "json"):
        prog, adapter, parse, ex = make_program(kind, instruction)
        prog.predictors()[0].demos = [ex(d) for d in demos]
        pred = prog.predictors()[0]
        reqs = [adapter.format(pred.signature, pred.demos, {"input": r["input"]}) for r in rows]
        got[kind] = test_score(server, reqs, rows, parse)
    kind = max(got, key=lambda k: got[k])
    return kind, (f"probe on {len(rows)} selection items, same 3 demos: raw-text {got['text']:.3f}, "
                  f"JSONAdapter {got['json']:.3f} -> {'raw-text' if kind == 'text' else 'JSONAdapter'}")


def run_dspy(data, server, args, seed, library, kind, tmp) -> list[dict]:
    """Random search sized for the largest budget, read at each budget like the others: candidate k's calls
    are the server's count when its valset pass ended (DSPy evaluates candidates one after another, each on
    the whole valset, so metric calls without a trace come in blocks of len(valset))."""
    from dspy.teleprompt import BootstrapFewShotWithRandomSearch

    instruction = " ".join([data["base"], *data["library"].values()]) if library else data["base"]
    top = max(args.budgets)
    dspy, lm = dspy_setup(server, tmp / f"dspy-cache-{library}-{seed}", limit=top)
    prog, adapter, parse, ex = make_program(kind, instruction)
    dspy.configure(lm=lm, adapter=adapter)
    by_input = {r["input"]: r for r in data["select"] + data["train"]}
    train = [ex(r) for r in random.Random(seed).sample(data["train"], len(data["train"]))]
    val = [ex(r) for r in data["select"]]
    n0 = server.count()
    ends: dict[int, int] = {}  # candidate index (seed + 3) -> server calls when its valset pass ended
    evals = [0]
    lock = threading.Lock()

    def metric(example, pred, trace=None):
        v = score(pred_reply(kind, pred), by_input[example.input])
        if trace is None:  # a valset evaluation (bootstrapping passes a trace)
            with lock:
                k = evals[0] // len(val)
                evals[0] += 1
                ends[k] = max(ends.get(k, 0), server.count() - n0)
        return v

    # Each candidate costs one valset pass (+ a few bootstrap calls); DSPy always runs its 3 fixed
    # candidates (zero-shot, labelled-only, unshuffled bootstrap) before the random ones.
    n_random = max(0, int(top // (len(val) + args.bootstrap_calls)) - 3)
    opt = BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=1, max_labeled_demos=MAX_DEMOS,
                                           num_candidate_programs=n_random, num_threads=CONCURRENCY, max_errors=10**6)
    t0 = time.time()
    best = opt.compile(prog, trainset=train, valset=val)
    wall, total = time.time() - t0, server.count() - n0
    cands = sorted(best.candidate_programs, key=lambda c: c["seed"])
    out, seen = [], {}
    for b in sorted(args.budgets):
        ok = [c for c in cands if ends.get(c["seed"] + 3, 10**9) <= b]
        if not ok:
            out.append({"arm": "dspy BootstrapFewShotWithRandomSearch", "budget": b,
                        "skipped": f"its first candidate needed {ends.get(0)} calls"})
            continue
        c = max(ok, key=lambda c: c["score"])  # first of equals: DSPy keeps the earlier one too
        if c["seed"] not in seen:
            seen[c["seed"]] = program_test(server, kind, c["program"], adapter, parse, data)
        out.append({"arm": "dspy BootstrapFewShotWithRandomSearch", "budget": b,
                    "calls": max(ends[x["seed"] + 3] for x in ok), "select": c["score"] / 100.0,
                    "test": seen[c["seed"]], "candidates": len(ok), "chosen_seed": c["seed"],
                    "demos": len(c["program"].predictors()[0].demos), "wall_s": round(wall), "server_calls_total": total})
    return out


def plain_text_proposer(rlm):
    """The standalone gepa package's own reflection prompt, read back as plain text (the instruction is the
    ``` block, or the whole reply). DSPy's built-in proposer asks the reflection model for DSPy field markers
    or JSON, which the 135M model never writes (every reflection failed to parse in a trial run), so offline
    it would measure formatting, not reflection; the capable-model row keeps DSPy's default."""
    from gepa.strategies.instruction_proposal import InstructionProposalSignature

    def lm(prompt) -> str:
        msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        out = rlm(messages=msgs)[0]
        return out.get("text", "") if isinstance(out, dict) else str(out)

    def propose(candidate, reflective_dataset, components_to_update):
        return {name: InstructionProposalSignature.run(lm, {"current_instruction_doc": candidate[name],
                                                            "dataset_with_feedback": reflective_dataset[name]})["new_instruction"]
                for name in components_to_update}

    return propose


def run_gepa(data, server, refl, args, seed, library, kind, tmp, capable: str | None = None) -> list[dict]:
    dspy, lm = dspy_setup(server, tmp / f"gepa-cache-{library}-{seed}-{capable}")
    instruction = " ".join([data["base"], *data["library"].values()]) if library else data["base"]
    prog, adapter, parse, ex = make_program(kind, instruction)
    dspy.configure(lm=lm, adapter=adapter)
    by_input = {r["input"]: r for r in data["select"] + data["train"]}
    train = [ex(r) for r in random.Random(seed).sample(data["train"], len(data["train"]))]
    val = [ex(r) for r in data["select"]]
    lib_note = ("\nSentences you may use in the instruction: " + " ".join(data["library"].values())) if library else ""

    def metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
        from sfia.forge_score import reward_components

        row = by_input[gold.input]
        text = pred_reply(kind, pred)
        comps = reward_components(text, row)
        from sfia_prompt import expected_reply

        fb = (f"forge_score {comps['forge_score']:.2f} (" + ", ".join(f"{k} {v:.2f}" for k, v in comps.items()
                                                               if k != "forge_score") + f"). Expected reply: {expected_reply(row)}"
              + lib_note)
        return dspy.Prediction(score=float(comps["forge_score"]), feedback=fb)

    if capable:
        base = os.environ.get("ANTHROPIC_BASE_URL") if capable.startswith("anthropic/") else None
        rlm = dspy.LM(capable, temperature=1.0, max_tokens=4000, cache=False, **({"api_base": base} if base else {}))
        name = f"gepa (reflection {capable.split('/')[-1]})"
    else:
        rlm = dspy.LM("openai/default_model", api_base=refl.base_url + "/v1", api_key="local", temperature=1.0,
                      max_tokens=args.reflection_tokens, cache=False, num_retries=3, timeout=TIMEOUT_S)
        name = "gepa (reflection: same 135M model)"
    top = max(args.budgets)
    opt = dspy.GEPA(metric=metric, max_metric_calls=top, reflection_lm=rlm, num_threads=CONCURRENCY,
                    track_stats=True, seed=seed, use_merge=True, log_dir=str(tmp / f"gepa-log-{library}-{seed}-{capable}"),
                    instruction_proposer=None if capable else plain_text_proposer(rlm))
    n0, r0, t0 = server.count(), refl.count() if refl else 0, time.time()
    best = opt.compile(prog, trainset=train, valset=val)
    wall, calls_total = time.time() - t0, server.count() - n0
    refl_calls = (refl.count() - r0) if refl else None
    res = best.detailed_results
    out, seen = [], {}
    for b in sorted(args.budgets):
        # GEPA's metric calls are its task-model evaluations (cache hits included, so this never undercounts
        # the server); a candidate counts at budget b if GEPA had found it within b metric calls.
        ok = [i for i, n in enumerate(res.discovery_eval_counts) if n <= b]
        i = max(ok, key=lambda j: res.val_aggregate_scores[j])
        if i not in seen:
            p = res.candidates[i]
            seen[i] = program_test(server, kind, p, adapter, parse, data)
        out.append({"arm": name, "budget": b, "calls": min(b, res.total_metric_calls), "select": res.val_aggregate_scores[i],
                    "test": seen[i], "candidates": len(ok), "refl_calls": refl_calls, "wall_s": round(wall),
                    "gepa_metric_calls": res.total_metric_calls, "server_calls_total": calls_total})
    return out


# ------------------------------------------------------------------------------------------------- report
def table(rows: list[dict], arms: list[str]) -> list[str]:
    lines = [f"{'library':8} {'budget':>6} {'arm':42} {'n':>2} {'calls':>11} {'select':>13} {'test forge':>15}"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if "test" in r:
            groups.setdefault((r["library"], r["budget"], r["arm"]), []).append(r)

    def ms(v: list[float]) -> str:
        return f"{statistics.fmean(v):.3f}±{statistics.stdev(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    for (lib, b, arm), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], arms.index(kv[0][2]) if kv[0][2] in arms else 9)):
        calls = [r["calls"] for r in g]
        lines.append(f"{lib:8} {b:>6} {arm:42} {len(g):>2} {min(calls):>5}-{max(calls):<5} "
                     f"{ms([r['select'] for r in g]):>13} {ms([r['test'] for r in g]):>15}")
    for r in rows:
        if "test" not in r:
            lines.append(f"{r.get('library', '')}/seed {r.get('seed', '')} {r['arm']} budget {r.get('budget', '-')}: "
                         f"{r.get('skipped') or r.get('error')}")
    lines.append("")
    for (lib, b, arm), g in sorted(groups.items()):
        if arm != "autoloop engine":
            continue
        ours = statistics.fmean(r["test"] for r in g)
        for (lib2, b2, arm2), g2 in sorted(groups.items()):
            if (lib2, b2) == (lib, b) and arm2 != arm:
                peer = statistics.fmean(r["test"] for r in g2)
                ratio = f"{ours / peer:.2f}x" if peer > 0 else "n/a (peer 0)"
                lines.append(f"ratio library={lib} budget={b}: autoloop / {arm2} = {ours:.3f} / {peer:.3f} = {ratio}"
                             f" (seeds: {len(g)} vs {len(g2)})")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="40,100", help="task-model call budgets per optimiser (comma-separated)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--library", default="off,on", help="settings: off (neither arm gets it), on (every arm does)")
    ap.add_argument("--arms", default="ours,dspy,gepa")
    ap.add_argument("--select", type=int, default=12, help="gold rows for selection (valset / the engine's splits)")
    ap.add_argument("--test", type=int, default=60, help="disjoint gold rows for the final score")
    ap.add_argument("--screen", type=int, default=4, help="the engine's screening minibatch")
    ap.add_argument("--adapter", choices=["auto", "text", "json"], default="auto")
    ap.add_argument("--adapter-probe", type=int, default=6)
    ap.add_argument("--bootstrap-calls", type=int, default=1, help="DSPy: assumed extra calls per candidate")
    ap.add_argument("--reflection-tokens", type=int, default=256, help="max_tokens of the offline reflection model")
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--task-model", default="local",
                    help="local (the bundled SmolLM2-135M behind mlx_lm.server) or anthropic:MODEL (needs "
                         "ANTHROPIC_API_KEY; every arm's task calls go through a counting proxy on 127.0.0.1)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="optimiser runs (seed, setting, arm) at once, each in its own process with its own model servers")
    ap.add_argument("--memo-dir", type=Path, default=None, help=argparse.SUPPRESS)  # set by --jobs for its workers
    ap.add_argument("--resume", action="store_true",
                    help="continue the invocation whose table is at --out (same options): finished runs are kept")
    args = ap.parse_args()
    if args.task_model != "local" and not (args.task_model.startswith("anthropic:") and args.task_model[10:]):
        die(f"--task-model {args.task_model}: use local or anthropic:MODEL (e.g. anthropic:claude-haiku-4-5)")
    if args.jobs < 1:
        die(f"--jobs {args.jobs}: give 1 or more")
    if args.memo_dir:
        MEMO_DIR.append(str(args.memo_dir))
    if args.task_model != "local" and not os.environ.get("ANTHROPIC_API_KEY"):
        die(f"--task-model {args.task_model}: set ANTHROPIC_API_KEY (or use --task-model local)")
    args.budgets = [int(x) for x in args.budgets.split(",")]
    seeds = [int(x) for x in args.seeds.split(",")]
    libs = [x.strip() for x in args.library.split(",")]
    arms = [x.strip() for x in args.arms.split(",")]
    command = "python bench/prompt_optimisers.py " + " ".join(shlex.quote(a) for a in sys.argv[1:] if a != "--resume")
    rows_path = args.out.with_suffix(".jsonl")
    rows: list[dict] = []
    resumed = ""
    if args.resume:
        # The same invocation, continued (a stopped session, a reboot): rows of finished (seed, setting, arm)
        # runs are kept, the rest run. The options must be the same; the table may have been moved (--out).
        before = args.out.read_text().splitlines() if args.out.exists() else []
        first = next((ln for ln in before if ln.startswith("command: ")), None)
        started = next((ln for ln in before if ln.startswith("started ")), None)
        if first is None or not rows_path.exists():
            die(f"--resume: no earlier table at {args.out} (and {rows_path.name}); run without --resume first")
        if _what(first[9:]) != _what(command):
            die(f"--resume: {args.out} was written by `{first[9:]}`; resume with exactly those options")
        rows = [r for r in (json.loads(x) for x in rows_path.read_text().splitlines() if x.strip()) if "error" not in r]
        resumed = (f"resumed {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with --resume: the "
                   f"{len({(r['seed'], r['library'], arm_key(r['arm'])) for r in rows})} optimiser runs finished "
                   f"before were kept, the others ran now (same splits, seeds and sizes)")

    data = load_data(args)
    tmp = Path(tempfile.mkdtemp(prefix="bench-prompt-"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        rows_path.write_text("")
    header = [f"command: {command}", f"started {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
              f"selection {len(data['select'])} gold rows, test {len(data['test'])} disjoint gold rows, "
              f"train {len(data['train'])} rows; task model "
              f"{'SmolLM2-135M via mlx_lm.server' if args.task_model == 'local' else args.task_model}; "
              f"budgets {args.budgets}; seeds {seeds}"]
    if resumed:
        header = [header[0], started or header[1], resumed]
    print("\n".join(header), flush=True)
    local = args.task_model == "local"
    task: Any = Server(tmp, "task") if local else AnthropicEndpoint(args.task_model.split(":", 1)[1])
    refl = Server(tmp, "reflection") if "gepa" in arms and local and args.jobs == 1 else None
    notes: list[str] = []
    arm_names = ["autoloop engine", "dspy BootstrapFewShotWithRandomSearch", "gepa (reflection: same 135M model)"]

    def record(new: list[dict], lib: str, seed: int) -> None:
        for r in new:
            r.update(library=lib, seed=seed)
            r.setdefault("finished", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
            rows.append(r)
            with open(rows_path, "a") as f:
                f.write(json.dumps(r) + "\n")
            print(json.dumps(r), flush=True)
        write(partial=True)

    def write(partial: bool) -> None:
        body = header + notes + [""] + table(rows, arm_names)
        if partial:
            body.insert(0, "PARTIAL: the invocation below had not finished when this was written.")
        args.out.write_text("\n".join(body) + "\n")

    try:
        kind = "text"
        if "dspy" in arms or "gepa" in arms:
            kind, why = choose_adapter(data, task, args, data["base"])
            notes.append(f"peer adapter: {why}")
            print(notes[-1], flush=True)
        capable = os.environ.get("BENCH_REFLECTION_MODEL", "anthropic/claude-sonnet-4-5") \
            if os.environ.get("ANTHROPIC_API_KEY") else None
        if "gepa" in arms and not capable:
            notes.append("gepa with a capable reflection model: skipped (set ANTHROPIC_API_KEY to run it)")
        if "gepa" in arms and not local:
            notes.append("gepa with the 135M model as reflector: not run (the task model is an API model)")
        if args.resume:  # rows that --jobs groups of the stopped invocation wrote, with or without --jobs now
            for path in sorted(args.out.with_suffix(".groups").glob("s*-*.jsonl")):
                have = {(r["seed"], r["library"], arm_key(r["arm"]), r.get("budget")) for r in rows}
                for r in (json.loads(x) for x in path.read_text().splitlines() if x.strip()):
                    if "error" not in r and (r["seed"], r["library"], arm_key(r["arm"]), r.get("budget")) not in have:
                        record([r], r["library"], r["seed"])
        if args.jobs > 1:
            notes.append(f"--jobs {args.jobs}: optimiser runs ran in parallel processes, each with its own "
                         f"model servers and the adapter chosen above; calls are counted per run, so no arm's "
                         f"count or budget is affected (only wall times are)")
            task.stop()
            if refl:
                refl.stop()
            run_groups(args, kind, seeds, libs, arms, rows, record)
        for seed in seeds if args.jobs == 1 else []:  # seed-major: a run stopped early still has every setting at the same seeds
            for lib in libs:
                for arm in arms:
                    if any((r["seed"], r["library"], arm_key(r["arm"])) == (seed, lib, arm) for r in rows):
                        continue  # finished before this --resume
                    try:
                        if arm == "ours":
                            got = run_ours(data, task, args, seed, lib == "on", tmp)
                        elif arm == "dspy":
                            got = run_dspy(data, task, args, seed, lib == "on", kind, tmp)
                        else:
                            got = run_gepa(data, task, refl, args, seed, lib == "on", kind, tmp) if local else []
                            if capable:
                                got += run_gepa(data, task, None, args, seed, lib == "on", kind, tmp, capable)
                    except Exception as e:  # noqa: BLE001 - one arm's failure is a row, not the end of the bench
                        got = [{"arm": arm, "error": f"{type(e).__name__}: {e}"[:400]}]
                    record(got, lib, seed)
        write(partial=False)
    finally:
        task.stop()
        if refl:
            refl.stop()
    print("\n".join(table(rows, arm_names)))
    print(f"\nwritten: {args.out} and {rows_path}")


if __name__ == "__main__":
    main()
