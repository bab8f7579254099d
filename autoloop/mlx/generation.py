"""Load a model in float32 and generate replies for many chats at once (for scoring on a gold set).

Why batched: on a 2-core CPU one sequence decodes at ~16 tokens/s, while a batch shares each weight read across
its rows; mlx-lm's `batch_generate` (continuous batching, left-padded prefill) does this for us. Greedy decoding
(temperature 0) is deterministic for a given batch size; rows are padded differently at other batch sizes, so
float rounding may, rarely, flip a near-tie token — keep the batch size fixed across a run's evaluations.
Prompts are decoded shortest first (less padding in each prefill batch) and returned in input order.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

DEFAULT_DTYPE = "float32"  # MLX's CPU backend runs bf16/fp16 matmuls at a few GFLOP/s


def load_model(path: str | Path, adapter_path: str | Path | None = None, dtype: str | None = DEFAULT_DTYPE):
    """(model, tokenizer) from a model name/folder (see models.resolve_model), optionally with LoRA adapters
    (an mlx-lm adapter folder), floating-point parameters cast to `dtype` (None keeps the saved dtype).
    On Linux, if this is the process's first use of MLX, the system OpenBLAS is bound first (see blas.py)."""
    from autoloop.mlx.blas import use_openblas_in_process

    use_openblas_in_process()
    import mlx.core as mx
    from mlx_lm import load

    from autoloop.mlx.models import resolve_model

    model_path = resolve_model(str(path))
    model, tokenizer = load(str(model_path), adapter_path=str(adapter_path) if adapter_path else None)
    if dtype:
        model.set_dtype(getattr(mx, dtype))
        mx.eval(model.parameters())
    return model, tokenizer


def encode_chats(tokenizer, messages_list: list[list[dict]]) -> list[list[int]]:
    """Prompt token ids for each chat, rendered with the model's chat template and a generation prompt."""
    return [list(tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=True)) for m in messages_list]


def generate_batch_with_stats(model, tokenizer, messages_list: list[list[dict]], max_tokens: int,
                              temperature: float = 0.0, batch_size: int = 16, seed: int = 0,
                              logits_processors: list | None = None,
                              progress_task: str | None = "generate",
                              alive: Callable[[str], bool | None] | None = None) -> tuple[list[str], dict[str, Any]]:
    """generate_batch, plus what it cost: prompt/generated token counts, wall seconds, tokens per second.

    Inside an autoloop child it reports replies finished out of the total (and tokens/s) through
    `autoloop.progress` under `progress_task` (None: silent).

    `logits_processors`, when given, holds one entry per chat: a list of mlx-lm logits processors
    (`processor(tokens, logits) -> logits`, called once per decoding step with that row's tokens so far and
    its (1, vocab) logits) or a single processor. Use it to constrain decoding, e.g. to mask every token a
    grammar does not allow: the processor is stateful and owned by its row; it sees the token chosen at the
    previous step as `tokens[-1]` (at its first call, `tokens[-1]` is the last prompt token).

    `alive(reply_so_far)`, when given, is asked after each token of a row until it answers True: False stops that
    row there (its reply is returned as far as it got, counted in stats["stopped_early"]). Use it only with a
    rule under which no continuation could change the row's score, e.g. a reply that can no longer parse as the
    required JSON: an untrained model's baseline then costs a few tokens per row instead of `max_tokens`.
    """
    import mlx.core as mx
    from mlx_lm.sample_utils import make_sampler

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not messages_list:
        return [], {"prompts": 0, "prompt_tokens": 0, "generated_tokens": 0, "wall_s": 0.0, "tokens_per_s": 0.0}
    prompts = encode_chats(tokenizer, messages_list)
    mx.random.seed(seed)
    start = time.perf_counter()
    rows = None
    if logits_processors is not None:
        if len(logits_processors) != len(prompts):
            raise ValueError(f"logits_processors: {len(logits_processors)} entries for {len(prompts)} chats; "
                             "pass one (list of) processor(s) per chat")
        rows = [list(p) if isinstance(p, (list, tuple)) else [p] for p in logits_processors]
    # Prefill runs in batches right-padded to their longest prompt: on real adverts (84-498 tokens) input order
    # pads 171 prompts to 75k tokens, shortest-first to 56k (-25% of the exam's prefill, its largest cost on a
    # CPU). Rows go in sorted by length (stable) and come back in input order.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    ids_sorted, stopped = _batch_generate(model, tokenizer, [prompts[i] for i in order], max_tokens,
                                          make_sampler(temp=temperature), batch_size, progress_task,
                                          [rows[i] for i in order] if rows is not None else None, alive)
    token_ids: list = [None] * len(prompts)
    for pos, i in enumerate(order):
        token_ids[i] = ids_sorted[pos]
    wall = time.perf_counter() - start
    generated = sum(len(t) for t in token_ids)
    stats = {"prompts": len(prompts), "prompt_tokens": sum(len(p) for p in prompts), "generated_tokens": generated,
             "wall_s": round(wall, 3), "tokens_per_s": round(generated / wall, 2) if wall > 0 else 0.0,
             "batch_size": batch_size, "max_tokens": max_tokens, "temperature": temperature,
             **({"stopped_early": stopped} if alive is not None else {})}
    return [tokenizer.decode(t) for t in token_ids], stats


def _batch_generate(model, tokenizer, prompts: list[list[int]], max_tokens: int, sampler, batch_size: int,
                    progress_task: str | None, processors: list[list] | None = None,
                    alive: Callable[[str], bool | None] | None = None) -> tuple[list[list[int]], int]:
    """mlx-lm's `batch_generate` (the same BatchGenerator, settings and stop handling, so the same tokens),
    driven here so finished replies can be counted while the batch runs, so each row may have its own
    logits processors (batch_generate only takes one shared list), and so a row that `alive` rules out can
    leave the batch early. Returns (token ids per prompt, rows stopped early)."""
    from mlx_lm.generate import BatchGenerator

    from autoloop import progress

    gen = BatchGenerator(model, stop_tokens=[[t] for t in tokenizer.eos_token_ids], sampler=sampler,
                         completion_batch_size=batch_size, prefill_batch_size=batch_size)
    n, finished, tokens = len(prompts), 0, 0
    results: dict[int, list[int]] = {}
    plen: dict[int, int] = {}  # prompt tokens per row
    done: set[int] = set()
    undecided: set[int] = set()  # rows `alive` is still asked about
    stopped = 0
    t0 = time.perf_counter()

    active = bool(progress_task) and progress.enabled()

    def report() -> None:
        if not active:
            return
        elapsed = max(time.perf_counter() - t0, 1e-9)
        # Throughput counts the prompt tokens too: on long inputs prefill is most of the time, and a row
        # stopped early by `alive` may generate a handful of tokens, so generated tokens alone (the earlier
        # figure) read 0.4 tok/s and an ETA of 11 hours while the phase was minutes from its end.
        started = [uid for uid in results if results[uid] or uid in done]
        work_done = tokens + sum(plen[uid] for uid in started)
        rate = work_done / elapsed
        if finished >= min(batch_size, n):
            # a batch's worth of replies has finished: the reply rate so far is the better guide
            eta = elapsed / finished * (n - finished)
        else:
            # before that, the work left in tokens: prompts not yet read and replies of max_tokens
            left = sum(plen[uid] for uid in results if uid not in started)
            left += sum(max(max_tokens - len(ids), 1) for uid, ids in results.items() if uid not in done)
            eta = left / rate if work_done > 0 else None
        progress.report(done=finished, total=n, unit="replies", task=progress_task, tokens_per_s=rate, eta_s=eta)

    report()
    try:
        uids = gen.insert(prompts, [max_tokens] * n, **({"logits_processors": processors} if processors else {}))
        results.update({uid: [] for uid in uids})
        plen.update({uid: len(p) for uid, p in zip(uids, prompts)})
        if alive is not None:
            undecided.update(uids)
        while responses := gen.next_generated():
            dead = []
            for r in responses:
                if r.finish_reason != "stop":
                    results[r.uid].append(r.token)
                    tokens += 1
                if r.finish_reason is not None:
                    finished += 1
                    done.add(r.uid)
                elif r.uid in undecided:
                    verdict = alive(tokenizer.decode(results[r.uid]))
                    if verdict is not None:
                        undecided.discard(r.uid)
                    if verdict is False:
                        dead.append(r.uid)
            if dead:
                gen.remove(dead)
                stopped += len(dead)
                finished += len(dead)
                done.update(dead)
            report()
    finally:
        gen.close()
    return [results[uid] for uid in uids], stopped


def generate_batch(model, tokenizer, messages_list: list[list[dict]], max_tokens: int, temperature: float = 0.0,
                   batch_size: int = 16, seed: int = 0, logits_processors: list | None = None) -> list[str]:
    """One reply per chat (a list of {"role", "content"} messages), in input order, `batch_size` sequences
    decoded together. temperature 0 is greedy and deterministic; otherwise sampling is seeded by `seed`.
    `logits_processors`: one (list of) mlx-lm logits processor(s) per chat, see generate_batch_with_stats."""
    return generate_batch_with_stats(model, tokenizer, messages_list, max_tokens, temperature, batch_size, seed,
                                     logits_processors)[0]


BENCH_TOPICS = ["the water cycle", "how a bicycle works", "the history of Paris", "photosynthesis", "volcanoes",
                "the moon landing", "how computers store numbers", "bees", "the Roman empire", "rainbows",
                "chess", "the human heart", "trains", "coffee", "glaciers", "electric cars", "the printing press",
                "whales", "solar panels", "the Olympic games", "bread baking", "earthquakes", "libraries",
                "the internet", "tea", "mountains", "penguins", "clocks", "vaccines", "deserts", "music notation",
                "bridges"]


def bench_generation(model, tokenizer, batch_sizes: list[int], max_tokens: int = 96) -> list[dict[str, Any]]:
    """Greedy generation throughput: for each batch size b, b distinct chat prompts asking for a longish
    answer, decoded together. Returns one stats dict per batch size."""
    rows = []
    generate_batch(model, tokenizer, [[{"role": "user", "content": "Hi"}]], max_tokens=4, batch_size=1)  # warm-up
    for b in batch_sizes:
        chats = [[{"role": "user", "content": f"Explain {BENCH_TOPICS[i % len(BENCH_TOPICS)]} in a paragraph."}]
                 for i in range(b)]
        rows.append(generate_batch_with_stats(model, tokenizer, chats, max_tokens=max_tokens, batch_size=b)[1])
    return rows
