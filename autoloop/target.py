"""The target contract: what a file passed to `autoloop run` must provide.

A target is a plain Python file with a module-level `target` object. The engine never knows what the
target optimises; it only calls these methods and records what they return.

Required (checked by `load_target`):
    name: str                     short identifier, used in run ids and tags
    direction: "max" | "min"      which way the composite score improves
    budget_s: float               deadline for one `run` call (seconds), default 300
    gold: Path                    held-out set; its sha256 is recorded with every run
    propose(history) -> Candidate           runs in the engine process under `propose_budget_s`
    run(candidate, state, deadline) -> None runs in a child process; mutates the state dir
    score(state, gold) -> Scores            runs in a child process under `score_budget_s`

Optional (found with getattr, like mlx-lm's TrainingCallback):
    setup(state) -> None          write the baseline state into an empty state dir (engine process, `setup_budget_s`)
    check() -> None               validate before anything is written (raise TargetError to refuse)
    compare(incumbent, candidate, gold) -> (Scores, Scores)
                                  measure both states interleaved in one child (noisy targets)
    screen(incumbent, members, gold) -> (Scores, list[Scores])
                                  the batch step's cheap measurement of every member beside the incumbent, in
                                  one child (a minibatch, one interleaved replay); without it a batch is
                                  ranked by `score` of each member (see autoloop/loop.py)
    screen_slack: float | None    with `screen`: a best member that screens worse than the incumbent by more
                                  than this is `invalid` before any full measurement (None: always measured)
    batch: int                    candidates per iteration (default 1; `--batch` overrides)
    propose_batch(history, n) -> list[Candidate]
                                  n members at once (else `propose` is asked n times, with the members so far
                                  in `history.pending`; a `propose` that returns a list is the batch)
    space: dict                   a search space (autoloop/proposers/search.py): `--proposer tpe|random|llm`
    search_options() -> dict      how an engine-built proposer scores, describes and constrains configs
    score_budget_s: float         deadline for score/compare/screen (default: budget_s)
    propose_budget_s: float       deadline for propose/propose_batch (default 600): past it the iteration is a
                                  crash ("propose() ran past its limit") and the loop goes on
    setup_budget_s: float         deadline for each one-time hook in the engine process: setup, check, child_env,
                                  describe (default 600): past it (or on an error or sys.exit) one line, exit 2,
                                  no run created (describe: a note)
    min_delta: float              improvement needed to keep (default 0.0)
    guards: dict[str, float]      component -> largest allowed fall versus the incumbent
    bootstrap: dict | None        {"confidence": 0.95, "stat": "diff"|"ratio"|"quantile_ratio", "threshold": 0.0,
                                   "resamples": 2000, "q": 95} -> keep needs a paired CI that clears threshold
                                  (quantile_ratio: items "<unit>/<member>", whole units resampled)
    patience: int                 default plateau patience for this target (--patience overrides)
    memory_cap_mb: float | None   kill the child tree above this RSS
    child_env() -> dict           extra environment for child processes (e.g. LD_PRELOAD of a BLAS)
    show_columns: list[str]       components `autoloop show` prints (default: all)
    large_file_mb: float          files above this size are stored by sha256 outside git (default 1)
    describe() -> dict            extra run metadata (e.g. which BLAS, model path) for the runs table; its
                                  "warnings" (list of one-line strings) are shown at run start and resume
    reference_scores(gold) -> dict[str, Scores | float]
                                  reference points scored once per run in a child (e.g. a constant reply): shown
                                  beside the score by `show`, `status`, `best`; table reference_scores
    baseline_label: str           what iteration 0 is, as a reference point (e.g. "untrained model")

Progress: code running in a child may call `autoloop.progress.report(done=, total=, unit=, task=, **metrics)`;
the engine shows it in its panel, its log lines and `autoloop status` (see autoloop/progress.py).
"""
from __future__ import annotations

import hashlib
import importlib.util
import math
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from autoloop.deadline import TimeLimit, deadline

if TYPE_CHECKING:  # pragma: no cover
    from autoloop.history import History


class TargetError(Exception):
    """A target file or its inputs are unusable. The message is one line: what, where, and the fix."""


class Rejected(Exception):
    """Raised by `run`, `score` or `compare` to reject a candidate on purpose (e.g. it failed a cheap
    screening). The iteration is recorded as `invalid` with this message as its reason; no traceback."""


@dataclass
class Candidate:
    """One proposed change: JSON-able parameters and a one-line description for humans."""

    params: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"params": self.params, "description": self.description}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Candidate":
        return cls(params=dict(d.get("params") or {}), description=str(d.get("description") or ""))


@dataclass
class Scores:
    """What `score` returns.

    score: the composite (None when it could not be computed: stored as NULL, never 0).
    components: named parts of the composite (e.g. json_validity), also used by guard metrics.
    items: per gold item value, keyed by the item's id: enables paired comparisons and SQL drill-down.
    cost_usd: money spent producing this score (API calls); summed for `--max-cost`.
    info: free JSON for humans (e.g. the config that was measured, a confidence interval).
    feedback: per-item detail (expected vs actual) that a proposer may read back from history.
    """

    score: float | None
    components: dict[str, float] = field(default_factory=dict)
    items: dict[str, float] = field(default_factory=dict)
    cost_usd: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    feedback: list[dict[str, Any]] = field(default_factory=list)

    def is_finite(self) -> bool:
        return self.score is not None and isinstance(self.score, (int, float)) and math.isfinite(self.score)

    def to_json(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return repr(v)  # JSON has no NaN; keep it readable and distinguishable
            return v

        return {
            "score": clean(self.score),
            "components": {k: clean(float(v)) for k, v in self.components.items()},
            "items": {str(k): clean(float(v)) for k, v in self.items.items()},
            "cost_usd": float(self.cost_usd or 0.0),
            "info": self.info,
            "feedback": self.feedback,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Scores":
        def num(v: Any) -> float | None:
            if v is None:
                return None
            if isinstance(v, str):
                return float(v)  # 'nan', 'inf'
            return float(v)

        return cls(
            score=num(d.get("score")),
            components={k: num(v) for k, v in (d.get("components") or {}).items()},  # type: ignore[misc]
            items={k: num(v) for k, v in (d.get("items") or {}).items()},  # type: ignore[misc]
            cost_usd=float(d.get("cost_usd") or 0.0),
            info=d.get("info") or {},
            feedback=d.get("feedback") or [],
        )


@runtime_checkable
class Target(Protocol):
    name: str
    direction: Literal["max", "min"]
    budget_s: float
    gold: Path

    def propose(self, history: "History") -> Candidate: ...

    def run(self, candidate: Candidate, state: Path, deadline: float) -> None: ...

    def score(self, state: Path, gold: Path) -> Scores: ...


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


IMPORT_BUDGET_S = 600.0  # importing a target file runs its top level in the engine process
HOOK_BUDGET_S = 600.0  # default limit on hooks run once in the engine process (setup, check, describe, child_env)


def call_hook(t: Any, p: Path | str, name: str, *args: Any) -> Any:
    """Call the target's one-time hook `name` in the engine process under its `setup_budget_s`: a hang, an
    exception or a sys.exit in it becomes one TargetError line naming the target file, the hook and the fix."""
    limit = float(getattr(t, "setup_budget_s", HOOK_BUDGET_S))
    try:
        with deadline(limit, "hook"):
            return getattr(t, name)(*args)
    except TargetError as e:
        raise TargetError(str(e) if str(p) in str(e) else f"{p}: {e}") from None
    except TimeLimit:
        raise TargetError(f"{p}: target.{name}() ran past its {limit:g} s limit; make {name}() faster or set "
                          f"setup_budget_s on the target") from None
    except SystemExit as e:
        raise TargetError(f"{p}: target.{name}() called sys.exit({e.code!r}); raise an exception or return") from None
    except Exception as e:
        from autoloop.envfault import fault
        f = fault(e, p)
        if f is not None:
            raise f from None
        raise TargetError(f"{p}: target.{name}() raised {type(e).__name__}: {e}; fix {name}()") from None


def child_env(t: Any, p: Path | str) -> dict[str, str]:
    """The target's extra environment for child processes, checked: a mapping of names to strings."""
    if not callable(getattr(t, "child_env", None)):
        return {}
    env = call_hook(t, p, "child_env")
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise TargetError(f"{p}: target.child_env() returned {type(env).__name__} {str(env)[:60]!r}; return a dict "
                          f"of environment names to string values")
    return dict(env)


def _import_file(path: Path):
    module_name = f"autoloop_target_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise TargetError(f"{path}: cannot be imported as Python; pass a .py file that defines `target`")
    module = importlib.util.module_from_spec(spec)
    # Registered before exec: dataclasses with `from __future__ import annotations` look themselves up here.
    sys.modules[module_name] = module
    target_dir = str(path.parent)
    if target_dir not in sys.path:
        sys.path.insert(0, target_dir)  # lets a target import helpers that sit beside it
    try:
        with deadline(IMPORT_BUDGET_S, "import"):
            spec.loader.exec_module(module)
    except TimeLimit:
        sys.modules.pop(module_name, None)
        raise TargetError(f"{path}: importing the target ran past {IMPORT_BUDGET_S:g} s; move slow work out of the "
                          f"module's top level (into setup() or run())") from None
    except SystemExit as e:
        sys.modules.pop(module_name, None)
        raise TargetError(f"{path}: importing the target called sys.exit({e.code!r}); put script code under "
                          f"`if __name__ == \"__main__\":`") from None
    except SyntaxError as e:
        sys.modules.pop(module_name, None)
        raise TargetError(f"{path}:{e.lineno}: syntax error: {e.msg}; fix the line and run again") from None
    except TargetError:
        sys.modules.pop(module_name, None)
        raise
    except Exception as e:
        sys.modules.pop(module_name, None)
        tb = traceback.extract_tb(e.__traceback__)
        line = next((fr.lineno for fr in reversed(tb) if Path(fr.filename).resolve() == path), None)
        where = f"{path}:{line}" if line else str(path)
        raise TargetError(f"{where}: importing the target raised {type(e).__name__}: {e}; fix the target file") from None
    return module


def load_target(path: str | Path) -> Any:
    """Import a target file by path and validate the contract. Raises TargetError (one line) on any fault."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise TargetError(f"{path}: no such target file; pass the path of a .py file such as targets/example_fit.py")
    if p.is_dir() or p.suffix != ".py":
        raise TargetError(f"{path}: a target is a .py file that defines `target`; pass a file path")
    module = _import_file(p)
    t = getattr(module, "target", None)
    if t is None:
        raise TargetError(f"{p}: defines no module-level `target`; add e.g. `target = MyTarget(...)` at the end of the file")
    validate_target(t, p)
    return t


def validate_target(t: Any, p: Path | str = "<target>") -> None:
    def bad(attr: str, fix: str) -> TargetError:
        return TargetError(f"{p}: target.{attr} {fix}")

    for meth in ("propose", "run", "score"):
        if not callable(getattr(t, meth, None)):
            raise bad(meth, f"is missing or not callable; define `def {meth}(...)` (see autoloop/target.py)")
    name = getattr(t, "name", None)
    if not isinstance(name, str) or not name:
        raise bad("name", f"is {name!r}; set a short non-empty string, e.g. name = 'my_task'")
    from autoloop.checkpoint import ref_problem

    problem = ref_problem(name)
    if problem:
        raise bad("name", f"{name!r} {problem}; it names runs and git tags: use letters, digits, '-', '_' and single dots")
    if getattr(t, "direction", None) not in ("max", "min"):
        raise bad("direction", f"is {getattr(t, 'direction', None)!r}; set it to 'max' or 'min'")
    budget = getattr(t, "budget_s", 300.0)
    if not isinstance(budget, (int, float)) or isinstance(budget, bool) or not (budget > 0) or not math.isfinite(budget):
        raise bad("budget_s", f"is {budget!r}; set a positive number of seconds, e.g. 300")
    for attr in ("propose_budget_s", "setup_budget_s"):
        limit = getattr(t, attr, 600.0)
        if not isinstance(limit, (int, float)) or isinstance(limit, bool) or not (limit > 0) or not math.isfinite(limit):
            raise bad(attr, f"is {limit!r}; set a positive number of seconds, e.g. 600")
    gold = getattr(t, "gold", None)
    if not isinstance(gold, (str, Path)):
        raise bad("gold", f"is {gold!r}; set it to the Path of the held-out gold file")
    gp = Path(gold)
    if not gp.is_absolute():
        gp = (Path(p).parent / gp) if Path(p).exists() else gp
    if not gp.exists():
        raise bad("gold", f"names {gold} which does not exist; create the gold file or fix the path")
    guards = getattr(t, "guards", None) or {}
    if not isinstance(guards, dict) or not all(isinstance(v, (int, float)) for v in guards.values()):
        raise bad("guards", "must be a dict of component name -> allowed fall (a number)")
    boot = getattr(t, "bootstrap", None)
    if boot is not None and not isinstance(boot, dict):
        raise bad("bootstrap", "must be None or a dict such as {'confidence': 0.95}")
    if boot and boot.get("stat", "diff") not in ("diff", "ratio", "quantile_ratio"):
        raise bad("bootstrap", f"stat={boot.get('stat')!r}; use 'diff', 'ratio' or 'quantile_ratio'")
    pat = getattr(t, "patience", None)
    if pat is not None and (isinstance(pat, bool) or not isinstance(pat, int) or pat < 1):
        raise bad("patience", f"={pat!r}; must be a whole number >= 1 (or absent: the engine's default 5)")
    if callable(getattr(t, "check", None)):
        call_hook(t, p, "check")
    child_env(t, p)


def refuse_sealed_gold(t: Any, target_file: Path) -> None:
    """A target may name gold splits (`gold_splits = {name: path}`) and seal some (`sealed_splits`): a sealed
    split is a test set only `autoloop eval --split NAME` reads; the loop must never score it."""
    splits = dict(getattr(t, "gold_splits", None) or {})
    gold = gold_path(t, target_file)
    for name in getattr(t, "sealed_splits", None) or ():
        if name in splits and gold_path(type("G", (), {"gold": splits[name]})(), target_file) == gold:
            raise TargetError(f"{target_file}: target.gold is the sealed split {name!r} ({gold}); the loop never "
                              f"scores it: point gold at another split and read it with `autoloop eval --split {name}`")


def check_gold(path: Path) -> None:
    """Refuse a gold set that cannot be read, before anything is written (one line: file, line, fix).

    The engine does not know a target's gold format; it checks what the file's name promises: every
    line of a .jsonl/.ndjson file is JSON, a .json file is JSON, any other file is readable text or
    bytes. A target with another contract simply names its file otherwise."""
    path = Path(path)
    try:
        if path.is_dir():
            next(iter(path.iterdir()), None)
            return
        data = path.read_bytes()
    except OSError as e:
        raise TargetError(f"{path}: gold set unreadable ({e.strerror or e}); fix its permissions or the target's `gold`") from None
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".ndjson", ".json"):
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TargetError(f"{path}:{line}: gold set is not UTF-8 (byte {e.start}); save the file as UTF-8") from None
    import json

    if suffix == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            raise TargetError(f"{path}:{e.lineno}: gold set is not valid JSON ({e.msg}); fix that line") from None
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            json.loads(line)
        except json.JSONDecodeError as e:
            raise TargetError(f"{path}:{n}: gold line is not valid JSON ({e.msg} at column {e.colno}); "
                              f"fix the line (one JSON value per line)") from None


def gold_path(t: Any, target_file: Path | None = None) -> Path:
    gp = Path(t.gold)
    if not gp.is_absolute() and target_file is not None and not gp.exists():
        gp = target_file.parent / gp
    return gp.resolve()
