"""GRPO throughput on SmolLM2-135M: autoloop's trainer vs mlx-lm-lora's, side by side.

Why: the flagship target lives on how many optimizer steps fit in a 300 s cycle on a
CPU. Both trainers run as child processes with the same BLAS environment, the same
float32 model, LoRA (rank 8, scale 20, q/k/v/o/gate/up/down, all layers), prompts,
reward, group size and completion length. Per side it prints completion tokens/s,
training tokens/s (completion tokens in the loss per training second), seconds per
step, steps per 300 s cycle, and achieved model FLOP/s as a share of a float32 matmul
peak measured in the same process.

mlx-lm-lora (PyPI `mlx-lm-lora`) is a bench-only dependency:  pip install mlx-lm-lora
If it calls mx.set_wired_limit (a Metal-only setting) on Linux, the call is shimmed
to a no-op and the shim is reported.

    nice -n 10 python bench/grpo_throughput.py                 # 300 s per side
    nice -n 10 python bench/grpo_throughput.py --seconds 60 --steps 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

JOBS = [
    "Senior data engineer: builds and runs batch and streaming pipelines, mentors two juniors.",
    "Service desk analyst who logs incidents, follows scripts and escalates to second line.",
    "Head of security architecture setting policy for cloud adoption across the group.",
    "Software developer writing and testing Python services under a lead's guidance.",
    "Product owner prioritising a backlog and agreeing acceptance criteria with users.",
    "Network engineer designing and maintaining the campus LAN and firewall rules.",
    "Test analyst planning regression suites and reporting defects for a payments app.",
    "IT operations manager accountable for capacity, availability and supplier SLAs.",
]
INSTRUCTION = ('Map the role to SFIA skills. Answer with JSON only: {"skills": [{"code": "ABCD", '
               '"level": 1-7}], "rationale": "..."}.\nRole: ')


def prompts() -> list[str]:
    return [INSTRUCTION + j for j in JOBS]


def reward(text: str) -> float:
    """Cheap, continuous (so groups almost never tie): JSON-ish shape and length."""
    s = 0.4 * ("{" in text) + 0.3 * ('"skills"' in text) + 0.3 * ('"level"' in text)
    return s - abs(len(text) - 160) / 400.0


def flops_per_token(model) -> float:
    from mlx.utils import tree_flatten
    return 2.0 * sum(v.size for _, v in tree_flatten(model.parameters()))


def install_wired_limit_shim() -> dict:
    """Wrap mx.set_wired_limit: try it, and on failure (Metal-only on Linux) return 0."""
    import mlx.core as mx

    info = {"calls": 0, "shimmed": 0}
    orig = getattr(mx, "set_wired_limit", None)

    def shim(limit):
        info["calls"] += 1
        try:
            return orig(limit) if orig else 0
        except Exception:
            info["shimmed"] += 1
            return 0

    mx.set_wired_limit = shim
    return info


def load(model_name: str, rank: int):
    from autoloop.mlx.generation import load_model
    from autoloop.mlx.lora import apply_lora

    model, tok = load_model(model_name)  # float32
    apply_lora(model, rank=rank, scale=20.0)
    return model, tok


def child_ours(a) -> dict:
    import mlx.optimizers as optim
    from autoloop.mlx.grpo import GRPOConfig, train_grpo

    model, tok = load(a.model, a.rank)
    cfg = GRPOConfig(group_size=a.group_size, max_completion_tokens=a.max_tokens, temperature=1.0,
                     max_steps=a.steps, max_grad_norm=0.0, epsilon=0.2, beta=0.0)
    times = []
    t0 = time.time()
    st = train_grpo(model, tok, prompts(), lambda texts, ps: [reward(t) for t in texts],
                    optim.Adam(learning_rate=1e-5), cfg, deadline=t0 + a.seconds,
                    on_step=lambda info: times.append(info["seconds"]))
    return {"step_seconds": times, "elapsed": time.time() - t0, "steps": st["steps"],
            "completion_tokens": st["completion_tokens"], "gen_seconds": st["gen_seconds"],
            "train_seconds": st["train_seconds"], "trained_completion_tokens": st["trained_completion_tokens"],
            "flops": st["gen_flops"] + st["train_flops"], "skipped_groups": st["skipped_groups"],
            "shared_prefix": st["shared_prefix"]}


class _Stop(Exception):
    pass


def child_mlx_lm_lora(a) -> dict:
    import mlx.optimizers as optim
    from mlx_lm_lora.trainer import grpo_trainer as gt
    from autoloop.mlx.grpo import encode_prompt

    shim = install_wired_limit_shim()
    model, tok = load(a.model, a.rank)
    fpt = flops_per_token(model)
    data = []
    for p in prompts():
        ids = encode_prompt(tok, p)
        data.append((ids, tok.encode("x", add_special_tokens=False), p, "x"))
    acc = {"completion_tokens": 0, "gen_seconds": 0.0, "trained": 0, "flops": 0.0, "gen_started": 0.0}
    orig_gen = gt.generate_grpo

    def timed_gen(model, tokenizer, prompt_tokens, *args, **kw):  # measure only, behaviour unchanged
        t = time.time()
        comps, texts, idx = orig_gen(model, tokenizer, prompt_tokens, *args, **kw)
        acc["gen_seconds"] += time.time() - t
        n = sum(int(c.size) for c in comps)
        acc["completion_tokens"] += n
        acc["trained"] += n
        plen = sum(len(prompt_tokens[i]) for i in set(idx))
        seq = sum(len(prompt_tokens[i]) + int(c.size) for c, i in zip(comps, idx))
        acc["flops"] += fpt * (n + plen) + 2 * fpt * seq
        return comps, texts, idx

    gt.generate_grpo = timed_gen
    times = []
    t0 = time.time()
    last = [t0]

    class CB:
        def on_train_loss_report(self, info):
            now = time.time()
            times.append(now - last[0])
            last[0] = now
            if now - t0 > a.seconds or (a.steps and len(times) >= a.steps):
                raise _Stop

        def on_val_loss_report(self, info):
            pass

    out = tempfile.mkdtemp()
    args = gt.GRPOTrainingArgs(batch_size=1, iters=10**6, steps_per_report=1, steps_per_eval=10**9,
                               steps_per_save=10**9, max_seq_length=2048,
                               adapter_file=os.path.join(out, "adapters.safetensors"),
                               group_size=a.group_size, beta=0.0, epsilon=0.2, epsilon_high=0.2,
                               max_completion_length=a.max_tokens, temperature=1.0, top_p=1.0,
                               top_k=0, min_p=0.0, grpo_loss_type="grpo")
    rf = lambda prompts, completions, answer, types=None: [reward(t) for t in completions]  # noqa: E731
    rf.__name__ = "bench_reward"
    try:
        gt.train_grpo(model, None, tok, optim.Adam(learning_rate=1e-5), data, None, reward_funcs=[rf],
                      args=args, training_callback=CB(), end_answer_token="")
    except _Stop:
        pass
    el = time.time() - t0
    steps = len(times)
    return {"step_seconds": times, "elapsed": el, "steps": steps,
            "completion_tokens": acc["completion_tokens"], "gen_seconds": acc["gen_seconds"],
            "train_seconds": sum(times) - acc["gen_seconds"], "trained_completion_tokens": acc["trained"],
            "flops": acc["flops"], "wired_limit_calls": shim["calls"], "wired_limit_shimmed": shim["shimmed"]}


def child(a):
    from autoloop.mlx.blas import loaded_blas, matmul_gflops

    peak = max(matmul_gflops(1024), matmul_gflops(2048, max_seconds=3.0))
    res = child_ours(a) if a.child == "ours" else child_mlx_lm_lora(a)
    res.update(peak_gflops=peak, blas=loaded_blas()[0])
    Path(a.json_out).write_text(json.dumps(res))


def summarise(name: str, runs: list[dict], cycle: float) -> dict:
    """Pool the rounds of one side (the first step of each round is warm-up and left out of s/step)."""
    steady = [t for r in runs for t in (r["step_seconds"][1:] if len(r["step_seconds"]) > 1 else r["step_seconds"])]
    per = sum(steady) / len(steady) if steady else float("inf")
    tot = {k: sum(r[k] for r in runs) for k in ("steps", "completion_tokens", "gen_seconds", "train_seconds",
                                                  "trained_completion_tokens", "flops", "elapsed")}
    ts = tot["train_seconds"]
    return {
        "side": name, "steps": tot["steps"], "sec_per_step": per, "steps_per_cycle": cycle / per,
        "completion_tok_s": tot["completion_tokens"] / tot["gen_seconds"] if tot["gen_seconds"] else 0.0,
        "train_tok_s": tot["trained_completion_tokens"] / ts if ts > 0 else 0.0,
        "gflops": tot["flops"] / tot["elapsed"] / 1e9, "peak": max(r["peak_gflops"] for r in runs),
        "blas": runs[0]["blas"],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=300.0, help="wall time per side (default 300)")
    ap.add_argument("--steps", type=int, default=None, help="stop each side after this many steps")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=128, help="completion length cap")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--cycle", type=float, default=300.0, help="cycle length for steps-per-cycle")
    ap.add_argument("--sides", default="ours,mlx_lm_lora")
    ap.add_argument("--rounds", type=int, default=1,
                    help="alternate the sides this many times (ABAB), so a load that drifts hits both alike")
    ap.add_argument("--child", choices=["ours", "mlx_lm_lora"], help=argparse.SUPPRESS)
    ap.add_argument("--json-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)

    from autoloop.mlx.blas import blas_env
    from autoloop.mlx.models import resolve_model

    model_dir = str(resolve_model(a.model))  # convert once, before the timed children
    env = {**os.environ, **blas_env(), "PYTHONPATH": str(ROOT)}
    print(f"BLAS env for both children: LD_PRELOAD={env.get('LD_PRELOAD', '(none)')}")
    results: dict[str, list[dict]] = {}
    for side in [sd for _ in range(a.rounds) for sd in a.sides.split(",")]:
        with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
            out = f.name
        cmd = [sys.executable, __file__, "--child", side, "--json-out", out, "--seconds", str(a.seconds),
               "--group-size", str(a.group_size), "--max-tokens", str(a.max_tokens), "--rank", str(a.rank),
               "--model", model_dir] + (["--steps", str(a.steps)] if a.steps else [])
        print(f"running {side} ...", flush=True)
        p = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if p.returncode != 0:
            print(f"{side} failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
            continue
        r = json.loads(Path(out).read_text())
        if side == "mlx_lm_lora":
            print(f"mlx-lm-lora: mx.set_wired_limit shim installed; called {r['wired_limit_calls']}x, "
                  f"{r['wired_limit_shimmed']} call(s) failed and were made no-ops")
        results.setdefault(side, []).append(r)
    rows = [summarise(side, runs, a.cycle) for side, runs in results.items()]
    print(f"\nSmolLM2-135M float32, LoRA r{a.rank} all projections, G={a.group_size}, "
          f"max {a.max_tokens} completion tokens, 1 prompt/step")
    hdr = f"{'side':<12}{'steps':>6}{'s/step':>9}{'steps/cycle':>13}{'compl tok/s':>13}{'train tok/s':>13}" \
          f"{'GFLOP/s':>9}{'% peak':>8}  blas"
    print(hdr)
    for r in rows:
        print(f"{r['side']:<12}{r['steps']:>6}{r['sec_per_step']:>9.1f}{r['steps_per_cycle']:>13.1f}"
              f"{r['completion_tok_s']:>13.1f}{r['train_tok_s']:>13.1f}{r['gflops']:>9.1f}"
              f"{100 * r['gflops'] / r['peak']:>7.1f}%  {r['blas']} (peak {r['peak']:.0f} GFLOP/s)")
    by = {r["side"]: r for r in rows}
    if "ours" in by and "mlx_lm_lora" in by:
        ratio = by["ours"]["steps_per_cycle"] / by["mlx_lm_lora"]["steps_per_cycle"]
        print(f"ratio steps/cycle autoloop / mlx-lm-lora = {ratio:.2f}x (goal >= 1.5x)")


if __name__ == "__main__":
    main()
