"""Tiny randomly initialised llama models and a byte-level tokenizer for fast tests.

Why: the trainers must be tested on a real mlx-lm model class, a real tokenizer and
a real chat template without downloading anything. A 2-layer, 64-wide llama with a
300-token vocabulary runs a GRPO step in well under a second on this CPU.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")


def tiny_args(vocab_size: int = 300, dim: int = 64, layers: int = 2, heads: int = 4,
              kv_heads: int = 2, tie: bool = True) -> dict:
    """Config dict of a tiny llama (SmolLM2-like: tied embeddings, traditional RoPE)."""
    return {
        "model_type": "llama", "hidden_size": dim, "num_hidden_layers": layers,
        "intermediate_size": 2 * dim, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "rms_norm_eps": 1e-5, "vocab_size": vocab_size,
        "rope_theta": 10000.0, "rope_traditional": True, "tie_word_embeddings": tie,
    }


def tiny_llama(seed: int = 0, **kw):
    """A float32 mlx-lm llama.Model with seeded random weights."""
    from mlx_lm.models.llama import Model, ModelArgs

    mx.random.seed(seed)
    model = Model(ModelArgs.from_dict(tiny_args(**kw)))
    mx.eval(model.parameters())
    return model


def _hf_tokenizer():
    """A byte-level BPE with no merges (256 byte tokens) plus ChatML specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for ch in sorted(alphabet):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIALS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        chat_template=CHATML,
    )


def tiny_tokenizer():
    """mlx-lm TokenizerWrapper over the tiny byte-level tokenizer (eos = <|im_end|>, id 2)."""
    from mlx_lm.tokenizer_utils import TokenizerWrapper

    return TokenizerWrapper(_hf_tokenizer())


def save_tiny_model(model, out_dir: str | Path) -> Path:
    """Write `model` as an mlx-lm model folder (config, weights, tokenizer) for mlx_lm.load."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    args = model.args
    cfg = tiny_args(vocab_size=args.vocab_size, dim=args.hidden_size,
                    layers=args.num_hidden_layers, heads=args.num_attention_heads,
                    kv_heads=args.num_key_value_heads, tie=args.tie_word_embeddings)
    cfg["intermediate_size"] = args.intermediate_size
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    mx.save_safetensors(str(out / "model.safetensors"), dict(tree_flatten(model.parameters())),
                        metadata={"format": "mlx"})
    _hf_tokenizer().save_pretrained(str(out))
    return out
