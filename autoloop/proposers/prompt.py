"""Proposers for prompt targets: what to try next, given the run's history.

A prompt candidate's params are always complete, never a delta, so any iteration can be re-run alone:
    {"instruction": str, "demo_ids": [train ids], "edits": [library ids], "alternatives": [str, ...]}
`alternatives` are extra instructions the target screens on the same minibatch (GEPA-style: several
rewrites per proposal, only the best reaches the held-out evaluation).

Both proposers read only the *feedback* split: the per-item feedback the target returns carries
feedback-split items only, so held-out items never reach a proposer.
"""
from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from autoloop.target import Candidate


def params_key(p: dict[str, Any]) -> str:
    core = {"instruction": p.get("instruction", ""), "demo_ids": p.get("demo_ids", []), "edits": p.get("edits", [])}
    return hashlib.sha1(json.dumps(core, sort_keys=True).encode()).hexdigest()[:12]


def incumbent_params(history: Any, base_instruction: str) -> dict[str, Any]:
    """The params of the last kept prompt (the baseline's are empty: it is the base instruction)."""
    inc = history.incumbent if history is not None else None
    p = dict(inc.params) if inc is not None and inc.params else {}
    p.setdefault("instruction", base_instruction)
    p.setdefault("demo_ids", [])
    p.setdefault("edits", [])
    p.pop("alternatives", None)
    return p


def worst_feedback(history: Any, n: int) -> list[dict[str, Any]]:
    """The incumbent's n lowest-scoring feedback items (feedback split only)."""
    inc = history.incumbent if history is not None else None
    fb = inc.feedback() if inc is not None else []
    return sorted(fb, key=lambda f: f.get("score", 0.0))[:n]


def tried(history: Any) -> set[str]:
    return {params_key(r.params) for r in (history or []) if r.params}


# ---------------------------------------------------------------------------------------------- offline


@dataclass
class OfflineProposer:
    """No proposer LLM: local search over (few-shot demos from the training split) x (instruction edits).

    While the incumbent has no demos, a proposal is a complete program: `max_demos` demos at once (as DSPy's
    random search starts), since one added demo at a time spends a keep decision per demo, and at small call
    budgets the run ends before it gets to the several demos a small model needs. After that each proposal
    makes one move from the incumbent: add, swap or drop a demo, or add/drop an edit from `library`. Demos
    are picked to cover what the incumbent gets wrong: `demo_keys(row)` gives a row's labels (e.g. its skill
    codes); train rows sharing labels with the worst feedback items are preferred.
    Seeded by the iteration number, so a resumed run proposes the same thing again.
    """

    train: Sequence[dict[str, Any]]
    library: dict[str, str] = field(default_factory=dict)  # edit id -> sentence appended to the instruction
    demo_keys: Callable[[dict[str, Any]], set[str]] | None = None
    max_demos: int = 4
    seed: int = 0

    def compose(self, base: str, edits: Sequence[str]) -> str:
        return " ".join([base] + [self.library[e] for e in edits if e in self.library])

    def _pick_demo(self, rng: random.Random, have: list[str], history: Any, targeted: bool = True) -> str | None:
        pool = [r for r in self.train if str(r["id"]) not in have]
        if not pool:
            return None
        if self.demo_keys is not None and targeted and rng.random() < 0.75:  # mostly targeted, sometimes explore
            want: set[str] = set()
            for f in worst_feedback(history, 8):
                want |= set(f.get("keys") or [])
            covered: set[str] = set()
            for r in self.train:
                if str(r["id"]) in have:
                    covered |= self.demo_keys(r)
            want -= covered
            if want:
                scored = [(len(self.demo_keys(r) & want), rng.random(), r) for r in rng.sample(pool, min(len(pool), 400))]
                best = max(scored, key=lambda t: (t[0], t[1]))
                if best[0] > 0:
                    return str(best[2]["id"])
        return str(rng.choice(pool)["id"])

    def propose(self, history: Any, base_instruction: str) -> Candidate:
        inc = incumbent_params(history, base_instruction)
        base = inc.get("base", base_instruction)
        seen = tried(history)
        n = history.next_iter if history is not None else 1
        for attempt in range(50):
            rng = random.Random(f"{self.seed}:{n}:{attempt}")
            demos, edits = list(inc["demo_ids"]), list(inc["edits"])
            moves = []
            if len(demos) < self.max_demos:
                moves += ["add_demo"] * 3
            if demos:
                moves += ["swap_demo", "drop_demo"]
            free = [e for e in self.library if e not in edits]
            if free:
                moves += ["add_edit"] * 2
            if edits:
                moves += ["drop_edit"]
            move = rng.choice(moves) if moves else "add_demo"
            if not demos and self.max_demos > 1 and attempt < 40:
                move = "fill_demos"
            what = ""
            if move == "fill_demos":
                while len(demos) < self.max_demos:
                    new = self._pick_demo(rng, demos, history, targeted=attempt < 10)
                    if new is None:
                        break
                    demos.append(new)
                what = ",".join(demos)
            elif move in ("add_demo", "swap_demo"):
                new = self._pick_demo(rng, demos, history, targeted=attempt < 10)
                if new is None:
                    continue
                if move == "swap_demo":
                    demos.pop(rng.randrange(len(demos)))
                demos.append(new)
                what = new
            elif move == "drop_demo":
                what = demos.pop(rng.randrange(len(demos)))
            elif move == "add_edit":
                what = rng.choice(free)
                edits.append(what)
            elif move == "drop_edit":
                what = edits.pop(rng.randrange(len(edits)))
            p = {"base": base, "instruction": self.compose(base, edits), "demo_ids": demos, "edits": edits}
            if params_key(p) not in seen:
                return Candidate(p, f"offline: {move} {what} ({len(demos)} demos, {len(edits)} edits)")
        return Candidate({**inc, "base": base}, "offline: search space exhausted; re-measuring the incumbent")


# ---------------------------------------------------------------------------------------------- reflective

REFLECT_SYSTEM = (
    "You improve the system prompt of a small language model. You see the current prompt, items it got "
    "wrong with the expected and the actual output and a per-criterion breakdown, and earlier prompts with "
    "their scores. Diagnose the failure patterns, then write improved prompts. Keep every rewrite short: "
    "the model is small and every prompt token costs time. Output each rewrite between <prompt> and </prompt>."
)


@dataclass
class ReflectiveProposer:
    """GEPA-like: an LLM reads failures of the incumbent (feedback split only) and writes `n_rewrites`
    new instructions; the target screens all of them on one minibatch. Demos are kept as they are."""

    client: Any  # a BaseClient (AnthropicClient with the stronger proposer model, or a local one)
    n_rewrites: int = 3
    n_failures: int = 6
    n_history: int = 6
    max_tokens: int = 1500
    temperature: float = 1.0  # diverse rewrites; not cached (sampling is not deterministic)

    def meta_prompt(self, history: Any, inc: dict[str, Any]) -> str:
        parts = [f"## Current prompt\n{inc['instruction']}\n"]
        fails = worst_feedback(history, self.n_failures)
        if fails:
            parts.append("## Items the current prompt handled worst")
            for f in fails:
                comps = ", ".join(f"{k}={v:.2f}" for k, v in (f.get("components") or {}).items())
                parts.append(f"### item {f.get('id')} (score {f.get('score', 0):.2f}; {comps})\n"
                             f"Input: {str(f.get('input'))[:800]}\nExpected: {str(f.get('expected'))[:600]}\n"
                             f"Actual: {str(f.get('actual'))[:600]}\n")
        past = [r for r in history if r.params.get("instruction")][-self.n_history:] if history is not None else []
        if past:
            parts.append("## Earlier prompts and their held-out scores")
            for r in past:
                score = "screened out" if r.status == "invalid" else (f"{r.score:.3f}" if r.score is not None else r.status)
                parts.append(f"- [{r.status}, {score}] {r.params['instruction'][:400]}")
        parts.append(f"\nWrite {self.n_rewrites} different improved prompts, each between <prompt> and </prompt>.")
        return "\n".join(parts)

    def propose(self, history: Any, base_instruction: str) -> Candidate:
        from autoloop.llm.types import LLMRequest

        inc = incumbent_params(history, base_instruction)
        req = LLMRequest(system=REFLECT_SYSTEM, messages=[{"role": "user", "content": self.meta_prompt(history, inc)}],
                         max_tokens=self.max_tokens, temperature=self.temperature, purpose="propose")
        res = self.client.complete(req)
        text = res.unwrap()  # an API error here is a failed proposal (recorded as such), not an empty prompt
        rewrites = [m.strip() for m in re.findall(r"<prompt>(.*?)</prompt>", text, re.S) if m.strip()]
        if not rewrites:
            raise ValueError("the proposer LLM returned no <prompt>...</prompt> block")
        p = {"base": rewrites[0], "instruction": rewrites[0], "alternatives": rewrites[1:],
             "demo_ids": inc["demo_ids"], "edits": []}
        return Candidate(p, f"reflective: {len(rewrites)} rewrites from {len(worst_feedback(history, self.n_failures))} failures")
