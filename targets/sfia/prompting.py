"""The task prompt and data loading shared by the SFIA targets.

The system prompt is deliberately short (53 tokens with the SmolLM2 tokenizer): every prompt token is
processed for all 200 gold items at every checkpoint on a CPU. It states the reply schema compactly; the
codes themselves are what training teaches. The prompt-optimisation target starts from SYSTEM_PROMPT and
passes its own rewrite through `build_messages(..., system=...)`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

try:
    from autoloop.target import TargetError
except ImportError:  # the package used on its own (e.g. convert_official.py run as a script)
    class TargetError(Exception):  # type: ignore[no-redef]
        """Same role as autoloop.target.TargetError: a one-line message naming file, line and fix."""

SYSTEM_PROMPT = (
    'Find the SFIA 9 skills in the text. Reply with JSON only: '
    '{"skills":[{"code":"ABCD","level":1-7,"evidence":"phrase from text"}],"rationale":"brief"}. '
    "Higher level means more autonomy."
)


def build_messages(input_text: str, system: str | None = None,
                   demos: Iterable[tuple[str, str]] = ()) -> list[dict[str, str]]:
    """Chat messages for `tokenizer.apply_chat_template`: system, optional (input, reply) demos, the input.

    >>> [m["role"] for m in build_messages("Writes code.", demos=[("a", "b")])]
    ['system', 'user', 'assistant', 'user']
    """
    msgs = [{"role": "system", "content": SYSTEM_PROMPT if system is None else system}]
    for demo_in, demo_out in demos:
        msgs += [{"role": "user", "content": demo_in}, {"role": "assistant", "content": demo_out}]
    msgs.append({"role": "user", "content": input_text})
    return msgs


def load_jsonl(path: str | Path, required: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a JSONL file (blank lines skipped). Raises TargetError naming file:line on a bad row.

    `required` names fields every row must have, e.g. ("id", "input", "skills") for a gold file.
    """
    p = Path(path)
    if not p.is_file():
        raise TargetError(f"{p}: no such file; create it or fix the path (python targets/sfia/generate.py writes the defaults)")
    rows = []
    with open(p, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise TargetError(f"{p}:{n}: not valid JSON ({e.msg}); write one JSON object per line") from None
            if not isinstance(row, dict):
                raise TargetError(f"{p}:{n}: expected a JSON object, got {type(row).__name__}; write one object per line")
            missing = [k for k in required if k not in row]
            if missing:
                raise TargetError(f"{p}:{n}: missing field(s) {', '.join(missing)}; every row needs {', '.join(required)}")
            rows.append(row)
    if not rows:
        raise TargetError(f"{p}: file has no rows; add examples (one JSON object per line)")
    return rows
