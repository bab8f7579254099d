"""A reusable prompt-optimisation target: instruction + few-shot demos, scored item by item on a gold set.

Why these rules:
- The gold set is split once (seeded by item id) into a *feedback* split and a *held-out* split. Only
  feedback items are ever shown to a proposer; keep decisions use held-out items only, paired by id
  (Scores.items), so a prompt cannot be tuned to the exam.
- A proposal may be several prompts (the reflective proposer's rewrites): the engine's batch step runs each
  (`run` writes it), `screen` measures them all beside the incumbent on one minibatch of the feedback set,
  and only the best, if it screens no worse than the incumbent (`screen_slack`), costs a held-out evaluation.
- An item whose API call failed is left out of the score (and counted in info.errors): an outage is
  never a wrong answer. Too many failures make the phase fail instead of scoring.
- Backend: Anthropic when ANTHROPIC_API_KEY is set, else a local mlx_lm.server with the bundled SmolLM2,
  so the whole loop runs offline with real HTTP calls. Responses are cached, so a resumed run, or an
  unchanged prompt re-scored, costs no call.

State dir files: prompt.txt (the instruction), demos.json ([{id, input, reply}]), params.json.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import statistics
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from autoloop.target import Candidate, Rejected, Scores, TargetError

Row = dict[str, Any]


def default_messages(input_text: str, system: str, demos: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}]
    for q, a in demos:
        msgs += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return msgs + [{"role": "user", "content": input_text}]


def read_jsonl(path: Path, required: Sequence[str] = ("id", "input")) -> list[Row]:
    if not path.is_file():
        raise TargetError(f"{path}: no such file; create it (one JSON object per line) or fix the path")
    rows, seen = [], set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise TargetError(f"{path}:{n}: not valid JSON ({e}); write one JSON object per line") from None
        if not isinstance(row, dict) or any(k not in row for k in required):
            raise TargetError(f"{path}:{n}: each row needs the fields {', '.join(required)}; add them")
        if str(row["id"]) in seen:
            raise TargetError(f"{path}:{n}: duplicate id {row['id']!r}; ids must be unique (they key per-item scores)")
        seen.add(str(row["id"]))
        rows.append(row)
    if not rows:
        raise TargetError(f"{path}: has no rows; add examples")
    return rows


def prompt_version(params: dict[str, Any]) -> str:
    """A short id of what the task model sees (instruction + demo ids): shown by `autoloop show` in each
    candidate's description and stored as info["prompt_version"] by `score`."""
    return hashlib.sha256(json.dumps([params.get("instruction", ""), params.get("demo_ids") or []]).encode()).hexdigest()[:8]


def _u(seed: Any, key: str) -> float:
    """A fixed pseudo-random number in [0, 1) per (seed, key): splits never move when the file grows."""
    return int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:12], 16) / 16 ** 12


class PromptTarget:
    direction = "max"

    def __init__(self, name: str, gold: str | Path, base_instruction: str,
                 score_item: Callable[[str, Row], dict[str, float]], *, composite: str = "score",
                 metric: str = "score", train: str | Path | None = None,
                 build_messages: Callable[[str, str, Sequence[tuple[str, str]]], list[dict[str, str]]] = default_messages,
                 render_input: Callable[[Row], str] = lambda r: str(r["input"]),
                 expected: Callable[[Row], str] = lambda r: json.dumps(r.get("expected", r.get("reply", "")))[:1000],
                 demo_reply: Callable[[Row], str] = lambda r: str(r["reply"]),
                 item_keys: Callable[[Row], set[str]] | None = None, library: dict[str, str] | None = None,
                 feedback_frac: float = 0.5, split_seed: int = 0, heldout_n: int | None = None,
                 feedback_n: int | None = 16, screen_n: int = 8, screen_slack: float = 0.0, max_demos: int = 4,
                 max_tokens: int = 256, proposer: str = "auto", task_model: str | None = None,
                 proposer_model: str | None = None, local_model: str = "smollm2", concurrency: int = 8,
                 budget_s: float = 300.0, score_budget_s: float = 900.0, max_error_frac: float = 0.1,
                 batch: bool = False, bootstrap: dict | None = None, min_delta: float = 0.0):
        self.name, self.gold, self.base_instruction = name, Path(gold), base_instruction
        self.score_item, self.composite, self.metric = score_item, composite, metric
        self.train_path = Path(train) if train else None
        self.build_messages, self.render_input, self.expected = build_messages, render_input, expected
        self.demo_reply, self.item_keys, self.library = demo_reply, item_keys, dict(library or {})
        self.feedback_frac, self.split_seed = feedback_frac, split_seed
        self.heldout_n, self.feedback_n, self.screen_n, self.screen_slack = heldout_n, feedback_n, screen_n, screen_slack
        self.max_demos, self.max_tokens, self.proposer = max_demos, max_tokens, proposer
        self.task_model, self.proposer_model, self.local_model = task_model, proposer_model, local_model
        # `batch` here is Anthropic's Message Batches (half price, slower), not the engine's batch of candidates.
        self.concurrency, self.max_error_frac, self.message_batches = concurrency, max_error_frac, batch
        self.budget_s, self.score_budget_s, self.min_delta = budget_s, score_budget_s, min_delta
        # Keep only when a paired bootstrap over the same held-out items clears zero.
        self.bootstrap = bootstrap if bootstrap is not None else {"confidence": 0.9, "stat": "diff", "threshold": 0.0}
        self.show_columns = [f"heldout_{metric}", f"feedback_{metric}", "calls", "usd"]
        self._rows: list[Row] | None = None
        self._train: list[Row] | None = None

    # -- data ---------------------------------------------------------------------------------------
    def rows(self) -> list[Row]:
        if self._rows is None:
            self._rows = read_jsonl(self.gold)
        return self._rows

    def train(self) -> list[Row]:
        if self._train is None:
            self._train = read_jsonl(self.train_path, ("id", "input", "reply")) if self.train_path else []
        return self._train

    def split(self) -> tuple[list[Row], list[Row]]:
        """(feedback set, held-out set). Both in a fixed pseudo-random order, cut to feedback_n/heldout_n."""
        rows = sorted(self.rows(), key=lambda r: _u(self.split_seed, str(r["id"])))
        fb = [r for r in rows if _u(f"{self.split_seed}-split", str(r["id"])) < self.feedback_frac]
        ho = [r for r in rows if _u(f"{self.split_seed}-split", str(r["id"])) >= self.feedback_frac]
        return fb[: self.feedback_n] if self.feedback_n else fb, ho[: self.heldout_n] if self.heldout_n else ho

    def check(self) -> None:
        if self.proposer not in ("auto", "offline", "reflective"):
            raise TargetError(f"proposer {self.proposer!r} is not one of auto, offline, reflective; pick one "
                              f"(targets/sfia_prompt.py reads it from SFIA_PROMPT_PROPOSER)")
        fb, ho = self.split()
        if len(ho) < 2 or not fb:
            raise TargetError(f"{self.gold}: split gives {len(fb)} feedback and {len(ho)} held-out items; "
                              f"add gold rows or change feedback_frac")
        ids = {str(r["id"]) for r in self.train()}
        if ids & {str(r["id"]) for r in self.rows()}:
            raise TargetError(f"{self.train_path}: shares ids with the gold set {self.gold}; demos must not come from the exam")

    # -- prompt state -------------------------------------------------------------------------------
    def setup(self, state: Path) -> None:
        self.write_prompt(state, {"base": self.base_instruction, "instruction": self.base_instruction,
                                  "demo_ids": [], "edits": []})

    def write_prompt(self, state: Path, params: dict[str, Any]) -> None:
        by_id = {str(r["id"]): r for r in self.train()}
        demos = [{"id": d, "input": self.render_input(by_id[d]), "reply": self.demo_reply(by_id[d])}
                 for d in params.get("demo_ids", []) if d in by_id]
        (state / "prompt.txt").write_text(params["instruction"].rstrip() + "\n")
        (state / "demos.json").write_text(json.dumps(demos, indent=1, ensure_ascii=False) + "\n")
        p = {k: params.get(k) for k in ("base", "instruction", "demo_ids", "edits")}
        (state / "params.json").write_text(json.dumps(p, indent=1, ensure_ascii=False) + "\n")

    def read_prompt(self, state: Path) -> dict[str, Any]:
        f = state / "params.json"
        if not f.exists():
            raise TargetError(f"{state}: no params.json; the state dir was not set up by this target")
        p = json.loads(f.read_text())
        p["instruction"] = (state / "prompt.txt").read_text().rstrip("\n")  # a hand edit of prompt.txt wins
        return p

    def requests(self, params: dict[str, Any], rows: Sequence[Row]):
        from autoloop.llm.types import LLMRequest

        by_id = {str(r["id"]): r for r in self.train()}
        demos = [(self.render_input(by_id[d]), self.demo_reply(by_id[d])) for d in params.get("demo_ids", []) if d in by_id]
        out = []
        for r in rows:
            msgs = self.build_messages(self.render_input(r), params["instruction"], demos)
            system = msgs[0]["content"] if msgs and msgs[0]["role"] == "system" else ""
            rest = msgs[1:] if system else msgs
            out.append(LLMRequest(system=system, messages=rest, max_tokens=self.max_tokens, temperature=0.0,
                                  cache_prefix=2 * len(demos), tag=str(r["id"])))
        return out

    # -- backend ------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def backend(self) -> Iterator[Any]:
        """The task client: Anthropic with a key, else a local mlx_lm.server started for this phase."""
        if os.environ.get("ANTHROPIC_API_KEY"):
            from autoloop.llm.anthropic_client import AnthropicClient

            yield AnthropicClient(self.task_model, max_concurrency=self.concurrency)
            return
        from autoloop.llm.local_server import LocalModelServer
        from autoloop.llm.openai_compat import OpenAICompatClient
        from autoloop.mlx.models import resolve_model

        folder = resolve_model(self.local_model)
        log = Path(os.environ["AUTOLOOP_ITER_DIR"]) / "mlx_server.log" if os.environ.get("AUTOLOOP_ITER_DIR") else None
        srv = LocalModelServer(folder, log_path=log, max_tokens=self.max_tokens)
        client = OpenAICompatClient(srv.base_url, model_id=f"local:{folder.name}", max_concurrency=self.concurrency,
                                    before_send=srv.ensure_started)
        try:
            yield client
        finally:
            client.close()
            srv.stop()

    def evaluate(self, client: Any, params: dict[str, Any], rows: Sequence[Row]) -> dict[str, Any]:
        """id -> {"components", "score", "actual"} for answered items; failed calls are absent (errors counted)."""
        from autoloop.llm.types import BudgetExceeded

        reqs = self.requests(params, rows)
        try:
            if self.message_batches and hasattr(client, "complete_batch"):
                results = client.complete_batch(reqs)
            else:
                results = client.complete_many(reqs)
        except BudgetExceeded as e:
            raise Rejected(f"budget: {e}") from None
        out: dict[str, Any] = {}
        errors = [r for r in results if not r.ok]
        for row, res in zip(rows, results):
            if res.ok:
                comps = {k: float(v) for k, v in self.score_item(res.text or "", row).items()}
                out[str(row["id"])] = {"components": comps, "score": comps[self.composite], "actual": res.text}
        if errors and len(errors) > self.max_error_frac * len(rows):
            raise RuntimeError(f"{len(errors)}/{len(rows)} API calls failed after retries (first: {errors[0].error}); "
                               f"not scored, so no prompt is judged on an outage")
        return out

    # -- the Target contract -------------------------------------------------------------------------
    def propose(self, history: Any) -> Candidate:
        from autoloop.proposers import prompt as P

        mode = self.proposer
        if mode == "auto":
            mode = "reflective" if os.environ.get("ANTHROPIC_API_KEY") else "offline"
        if mode == "reflective":
            from autoloop.llm.anthropic_client import DEFAULT_PROPOSER_MODEL, AnthropicClient

            client = AnthropicClient(self.proposer_model or os.environ.get("AUTOLOOP_PROPOSER_MODEL") or DEFAULT_PROPOSER_MODEL)
            prop: Any = P.ReflectiveProposer(client)
        else:
            prop = P.OfflineProposer(self.train(), self.library, demo_keys=self.item_keys, max_demos=self.max_demos,
                                     seed=self.split_seed)
        cand = prop.propose(_WithChosenPrompt(history), self.base_instruction)
        p = cand.params
        variants = [p["instruction"]] + [a for a in p.get("alternatives") or [] if a]
        out = []
        for i, v in enumerate(variants):  # each rewrite is its own member of the engine's batch
            q = {k: val for k, val in p.items() if k != "alternatives"}
            q.update({"instruction": v, "base": p.get("base", v) if i == 0 else v})
            what = f"{cand.description} (rewrite {i + 1}/{len(variants)})" if len(variants) > 1 else cand.description
            out.append(Candidate(q, f"prompt {prompt_version(q)}: {what}"))
        return out if len(out) > 1 else out[0]

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None:
        """Write the candidate's prompt into the state dir (screening is the engine's, through `screen`)."""
        p = {k: v for k, v in candidate.params.items() if k != "alternatives"}
        self.write_prompt(state, p)

    def screen(self, incumbent: Path, members: list[Path], gold: Path) -> tuple[Scores, list[Scores]]:
        """The incumbent and every member on one minibatch of the feedback set (paired by item)."""
        inc = self.read_prompt(incumbent)
        cands = [self.read_prompt(m) for m in members]
        fb, _ = self.split()
        # The minibatch is seeded by the candidates, not the iteration number: a redo after kill -9 (a new
        # iteration number) screens on the same items, so every answer it needs is already in the cache.
        from autoloop.proposers.prompt import params_key

        seed = ":".join(params_key(c) for c in cands)
        mini = random.Random(f"{self.split_seed}:screen:{seed}").sample(fb, min(self.screen_n, len(fb)))
        with self.backend() as client:
            inc_res = self.evaluate(client, inc, mini)
            res = [self.evaluate(client, c, mini) for c in cands]
            stats = client.stats.as_dict()
        ids = [str(r["id"]) for r in mini]

        def scores(d: dict[str, Any], cost: float = 0.0) -> Scores:
            common = [i for i in ids if i in inc_res and i in d]
            m = statistics.fmean(d[i]["score"] for i in common) if common else float("nan")
            return Scores(score=m, components={f"screen_{self.metric}": m},
                          items={i: d[i]["score"] for i in common}, cost_usd=cost, info={"n_screen": len(ids)})

        out = [scores(r) for r in res]
        for sc, c in zip(out, cands):
            sc.info["prompt_version"] = prompt_version(c)
        return scores(inc_res, float(stats["cost_usd"])), out

    def score(self, state: Path, gold: Path) -> Scores:
        params = self.read_prompt(state)
        fb, ho = self.split()
        with self.backend() as client:
            ho_res = self.evaluate(client, params, ho)
            fb_res = self.evaluate(client, params, fb)
            stats = client.stats.as_dict()
        if len(ho_res) < 2:
            raise RuntimeError(f"only {len(ho_res)} held-out items answered; not scored")
        comp_names = list(next(iter(ho_res.values()))["components"])
        comps = {f"heldout_{self.metric}": statistics.fmean(v["score"] for v in ho_res.values())}
        comps[f"feedback_{self.metric}"] = statistics.fmean(v["score"] for v in fb_res.values()) if fb_res else float("nan")
        for k in comp_names:
            if k != self.composite:
                comps[k] = statistics.fmean(v["components"][k] for v in ho_res.values())
        comps["calls"] = float(stats["calls"])
        comps["usd"] = float(stats["cost_usd"])
        feedback = []
        for r in fb:
            v = fb_res.get(str(r["id"]))
            if v is None:
                continue
            feedback.append({"id": str(r["id"]), "input": self.render_input(r), "expected": self.expected(r),
                             "actual": v["actual"], "components": v["components"], "score": v["score"],
                             "keys": sorted(self.item_keys(r)) if self.item_keys else []})
        return Scores(score=comps[f"heldout_{self.metric}"], components=comps,
                      items={k: v["score"] for k, v in ho_res.items()}, cost_usd=stats["cost_usd"],
                      info={"prompt": params, "prompt_version": prompt_version(params), "n_heldout": len(ho), "n_feedback": len(fb),
                            "errors": len(ho) + len(fb) - len(ho_res) - len(fb_res), **stats},
                      feedback=feedback)


class _WithChosenPrompt:
    """History view whose records' params are the prompt actually kept (score's info["prompt"]), not the
    proposal: `run` may have picked one of several alternatives."""

    def __init__(self, history: Any):
        self._h = history

    def __getattr__(self, name: str) -> Any:
        return getattr(self._h, name)

    def __iter__(self):
        return (_Rec(r) for r in self._h)

    def __len__(self) -> int:
        return len(self._h)

    @property
    def incumbent(self) -> Any:
        inc = self._h.incumbent
        return _Rec(inc) if inc is not None else None


class _Rec:
    def __init__(self, rec: Any):
        self._r = rec

    def __getattr__(self, name: str) -> Any:
        return getattr(self._r, name)

    @property
    def params(self) -> dict[str, Any]:
        chosen = (self._r.info or {}).get("prompt")
        return dict(chosen) if chosen else dict(self._r.params)
