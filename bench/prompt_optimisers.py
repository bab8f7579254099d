"""Our offline prompt proposer vs DSPy's BootstrapFewShotWithRandomSearch, same server, gold set and budget.

Both optimisers talk to one local mlx_lm.server (bundled SmolLM2) over HTTP, select on the *feedback*
split of the SFIA gold set, and are finally scored on the *held-out* split with forge_score. Calls are
counted as real model requests (our response cache is fresh per bench run; DSPy's cache is disabled).

    python bench/prompt_optimisers.py                    # small defaults: ~15 min on a 2-core CPU
    python bench/prompt_optimisers.py --calls 400 --heldout 60 --feedback 24 --candidates 6

DSPy is a bench-only dependency (`pip install dspy`); the arm is skipped with a note when it is missing.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "targets")]


def load_target(args):
    import os

    os.environ["SFIA_PROMPT_HELDOUT_N"] = str(args.heldout)
    os.environ["SFIA_PROMPT_FEEDBACK_N"] = str(args.feedback)
    os.environ["SFIA_PROMPT_SCREEN_N"] = str(args.screen)
    os.environ.pop("ANTHROPIC_API_KEY", None)  # the bench is about the local server
    import sfia_prompt

    return sfia_prompt.target


def mean_score(res: dict) -> float:
    return statistics.fmean(v["score"] for v in res.values()) if res else 0.0


def run_ours(t, client, args) -> dict:
    """The offline proposer with screening, as the engine would drive it, in one process."""
    from autoloop.history import History, IterationRecord
    from autoloop.llm.proposers import OfflineProposer

    import random

    fb, ho = t.split()
    prop = OfflineProposer(t.train(), t.library, demo_keys=t.item_keys, max_demos=t.max_demos, seed=args.seed)
    tmp = Path(tempfile.mkdtemp())
    inc = {"base": t.base_instruction, "instruction": t.base_instruction, "demo_ids": [], "edits": []}
    inc_res = t.evaluate(client, inc, fb)
    hist = History(run_id="bench", direction="max")

    def add(n, params, res, status):
        fpath = tmp / f"fb{n}.json"
        fpath.write_text(json.dumps([{"id": k, "score": v["score"], "keys": sorted(t.item_keys(r))}
                                     for r in fb for k, v in res.items() if str(r["id"]) == k]))
        hist.iterations.append(IterationRecord(iter=n, status=status, params=params, score=mean_score(res),
                                               feedback_path=fpath))

    add(0, inc, inc_res, "keep")
    n = 1
    while client.stats.http_calls + len(ho) < args.calls:
        cand = prop.propose(hist, t.base_instruction).params
        mini = random.Random(f"{args.seed}:{n}").sample(fb, min(t.screen_n, len(fb)))
        ids = [str(r["id"]) for r in mini]
        c_mini = t.evaluate(client, cand, mini)
        if statistics.fmean(c_mini[i]["score"] for i in ids if i in c_mini) >= \
                statistics.fmean(inc_res[i]["score"] for i in ids if i in inc_res):
            c_res = t.evaluate(client, cand, fb)
            if mean_score(c_res) > mean_score(inc_res):
                inc, inc_res = cand, c_res
                add(n, cand, c_res, "keep")
            else:
                add(n, cand, c_res, "revert")
        else:
            add(n, cand, c_mini, "invalid")
        n += 1
    opt_calls = client.stats.http_calls
    final = t.evaluate(client, inc, ho)
    return {"optimiser": "autoloop offline", "calls": client.stats.http_calls, "optimise_calls": opt_calls,
            "heldout": mean_score(final), "feedback": mean_score(inc_res), "candidates": n - 1,
            "prompt": {"edits": inc["edits"], "demo_ids": inc["demo_ids"]}}


def run_dspy(t, base_url: str, args) -> dict:
    try:
        import dspy
    except ImportError:
        return {"optimiser": "dspy BootstrapFewShotWithRandomSearch", "skipped": "pip install dspy (bench-only)"}
    from dspy.teleprompt import BootstrapFewShotWithRandomSearch

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM("openai/default_model", api_base=base_url + "/v1", api_key="local", temperature=0.0,
                 max_tokens=t.max_tokens, cache=False, num_retries=3)
    dspy.configure(lm=lm)

    class Map(dspy.Signature):
        __doc__ = t.base_instruction
        input: str = dspy.InputField(desc="the text")
        reply: str = dspy.OutputField(desc="the JSON reply")

    fb, ho = t.split()
    gold_by_input = {r["input"]: r for r in fb + ho}
    train = [dspy.Example(input=r["input"], reply=r["reply"]).with_inputs("input") for r in t.train()[: args.dspy_train]]
    val = [dspy.Example(input=r["input"], reply="").with_inputs("input") for r in fb]

    def metric(example, pred, trace=None):
        row = gold_by_input.get(example.input)
        if row is None:  # a training example during bootstrapping: compare with its teacher reply's skills
            row = next((r for r in t.train() if r["input"] == example.input), {"input": example.input, "skills": []})
        return t.score_item(pred.reply or "", row)[t.composite]

    opt = BootstrapFewShotWithRandomSearch(metric=metric, max_bootstrapped_demos=2, max_labeled_demos=t.max_demos,
                                           num_candidate_programs=args.candidates, num_threads=t.concurrency)
    prog = opt.compile(dspy.Predict(Map), trainset=train, valset=val)
    opt_calls = len(lm.history)
    scores = []
    for r in ho:
        try:
            pred = prog(input=r["input"])
            scores.append(t.score_item(pred.reply or "", r)[t.composite])
        except Exception:  # noqa: BLE001 - DSPy raises when the reply does not parse into its fields: score 0
            scores.append(0.0)
    return {"optimiser": "dspy BootstrapFewShotWithRandomSearch", "calls": len(lm.history), "optimise_calls": opt_calls,
            "heldout": statistics.fmean(scores), "candidates": args.candidates}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=120, help="model calls per optimiser, incl. the final held-out eval")
    ap.add_argument("--heldout", type=int, default=20)
    ap.add_argument("--feedback", type=int, default=8)
    ap.add_argument("--screen", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=3, help="DSPy num_candidate_programs")
    ap.add_argument("--dspy-train", type=int, default=12, help="training rows DSPy may bootstrap demos from")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", choices=["ours", "dspy"], default=None)
    args = ap.parse_args()

    from autoloop.llm.cache import ResponseCache
    from autoloop.llm.local_server import LocalModelServer
    from autoloop.llm.openai_compat import OpenAICompatClient
    from autoloop.mlx.models import resolve_model

    t = load_target(args)
    folder = resolve_model("smollm2")
    out = []
    with LocalModelServer(folder, max_tokens=t.max_tokens) as srv:
        if args.only in (None, "ours"):
            t0 = time.time()
            client = OpenAICompatClient(srv.base_url, model_id=f"local:{folder.name}", max_concurrency=t.concurrency,
                                        cache=ResponseCache(Path(tempfile.mkdtemp()) / "c.sqlite"))
            out.append({**run_ours(t, client, args), "wall_s": round(time.time() - t0, 1)})
            print(json.dumps(out[-1]), flush=True)
        if args.only in (None, "dspy"):
            t0 = time.time()
            out.append({**run_dspy(t, srv.base_url, args), "wall_s": round(time.time() - t0, 1)})
            print(json.dumps(out[-1]), flush=True)
    print(f"\n{'optimiser':42} {'calls':>6} {'held-out forge':>15} {'wall s':>8}")
    for r in out:
        if "skipped" in r:
            print(f"{r['optimiser']:42} skipped: {r['skipped']}")
        else:
            print(f"{r['optimiser']:42} {r['calls']:>6} {r['heldout']:>15.3f} {r['wall_s']:>8}")
    print("gepa: not run (its reflection step needs a proposer LLM; the only local model is the 135M task model)")


if __name__ == "__main__":
    main()
