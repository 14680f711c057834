"""unlearn.models: the tiny preset, local directories, GGUF files, offline hub errors, saving."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearn.models import (
    ModelNotFoundError,
    TinyConfig,
    is_gguf_loaded,
    load_model,
    save_model,
)

CORPUS = [
    f"Person {i} was born in city {i * 7 % 13} and works as a {job}. Ünïcödé, 日本語 and émigré café {i}."
    for i, job in enumerate(["baker", "pilot", "poet", "nurse", "judge"] * 12)
] + ["The quick brown fox jumps over the lazy dog.\nQ: Where?\nA: Here."] * 5

SMALL = TinyConfig(seed=0)


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", texts=CORPUS, tiny=SMALL)


def _logits(model, tokenizer, text: str = "Person 3 was born in city 8 — émigré 🙂") -> torch.Tensor:
    batch = tokenizer([text], return_tensors="pt")
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


# --- the tiny preset ---------------------------------------------------------------------------


def test_tiny_is_deterministic_per_seed():
    model_a, tok_a = load_model("tiny", texts=CORPUS, tiny=TinyConfig(seed=7))
    model_b, tok_b = load_model("tiny", texts=CORPUS, tiny=TinyConfig(seed=7))
    model_c, _ = load_model("tiny", texts=CORPUS, tiny=TinyConfig(seed=8))
    a, b, c = _weights(model_a), _weights(model_b), _weights(model_c)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)
    assert tok_a.backend_tokenizer.to_str() == tok_b.backend_tokenizer.to_str()


def test_tiny_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    load_model("tiny", texts=CORPUS, tiny=TinyConfig(seed=5))
    assert torch.equal(torch.rand(3), expected)


def test_tiny_config_shapes_the_model_and_ids_match_the_tokenizer():
    config = TinyConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=48,
                        max_position_embeddings=64, vocab_size=300)
    model, tokenizer = load_model("tiny", texts=CORPUS, tiny=config)
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads) == (32, 1, 2, 1)
    assert (c.intermediate_size, c.max_position_embeddings) == (48, 64)
    assert c.vocab_size == len(tokenizer) <= 300
    assert model.get_input_embeddings().weight.shape == (len(tokenizer), 32)
    assert (c.bos_token_id, c.eos_token_id, c.pad_token_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"hidden_size": 0}, "hidden_size"),
        ({"num_layers": 0}, "num_layers"),
        ({"hidden_size": 60, "num_heads": 8}, "hidden_size"),
        ({"num_heads": 4, "num_kv_heads": 3}, "num_heads"),
        ({"vocab_size": 100}, "vocab_size"),
    ],
)
def test_tiny_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TinyConfig(**kwargs)


@pytest.mark.parametrize("texts", [None, [], ["   "], "a single string"])
def test_tiny_needs_training_texts(texts):
    with pytest.raises(ValueError, match="texts"):
        load_model("tiny", texts=texts)


def test_tiny_config_only_with_tiny(tmp_path):
    with pytest.raises(ValueError, match="tiny"):
        load_model(str(tmp_path), tiny=TinyConfig())


# --- the tiny tokenizer ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Person 3 was born in city 8.",
        "  leading and trailing spaces  ",
        "line one\nline two\n\ttabbed",
        "Ünïcödé émigré café — «quotes» 日本語テキスト 🙂🚀",
        "zxqv unseen wörds ÆØÅ ∑∫√",
        "",
    ],
)
def test_tokenizer_roundtrips_text_and_prepends_bos(tiny, text):
    _, tokenizer = tiny
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_tokenizer_special_tokens(tiny):
    model, tokenizer = tiny
    assert 100 < len(tokenizer) <= SMALL.vocab_size
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert tokenizer.padding_side == "right"
    assert model.config.vocab_size == len(tokenizer)
    # merges were learned: a frequent corpus word is fewer tokens than bytes
    assert len(tokenizer("Person", add_special_tokens=False)["input_ids"]) < len("Person")


def test_tokenizer_chat_template(tiny):
    _, tokenizer = tiny
    messages = [{"role": "user", "content": "Where was Person 3 born?"}]
    rendered = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert rendered == "<|bos|><|im_start|>user\nWhere was Person 3 born?<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    im_start = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 1
    assert ids.count(im_start) == 2  # the chat markers are single tokens
    assert tokenizer.decode(ids) == rendered


# --- dtype, saving, local directories ----------------------------------------------------------


def test_bfloat16_tiny_has_the_fp32_weights_rounded(tiny):
    model32, tokenizer = tiny
    model16, _ = load_model("tiny", texts=CORPUS, tiny=SMALL, dtype=torch.bfloat16)
    assert {p.dtype for p in model16.parameters()} == {torch.bfloat16}
    for name, tensor in model16.state_dict().items():
        assert torch.equal(tensor, model32.state_dict()[name].to(torch.bfloat16)), name
    logits = _logits(model16, tokenizer)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("dtype", ["float64", "fp16", "int8", torch.int32])
def test_unknown_dtype_is_rejected(dtype):
    with pytest.raises(ValueError, match="dtype"):
        load_model("tiny", texts=CORPUS, dtype=dtype)


def test_save_then_load_local_dir_gives_identical_logits(tiny, tmp_path):
    model, tokenizer = tiny
    out = save_model(model, tokenizer, tmp_path / "saved")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    loaded, loaded_tok = load_model(str(out))
    assert torch.equal(_logits(model, tokenizer), _logits(loaded, loaded_tok))
    text = "Ünïcödé 🙂 Person 4"
    assert loaded_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded_tok.pad_token_id == tokenizer.pad_token_id != loaded_tok.eos_token_id
    messages = [{"role": "user", "content": "hi"}]
    assert loaded_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == \
        tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def test_local_dir_loads_in_bfloat16(tiny, tmp_path):
    model, tokenizer = tiny
    save_model(model, tokenizer, tmp_path)
    loaded, _ = load_model(str(tmp_path), dtype="bfloat16")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_tokenizer_without_pad_gets_one(tiny, tmp_path):
    model, tokenizer = tiny
    save_model(model, tokenizer, tmp_path)
    config_path = tmp_path / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("pad_token", None)
    config_path.write_text(json.dumps(config))
    tok_json = json.loads((tmp_path / "tokenizer.json").read_text())
    tok_json["padding"] = None
    (tmp_path / "tokenizer.json").write_text(json.dumps(tok_json))
    _, loaded_tok = load_model(str(tmp_path))
    assert loaded_tok.pad_token is not None
    assert loaded_tok.pad_token_id == loaded_tok.eos_token_id
    assert loaded_tok.padding_side == "right"


# --- clear errors, offline -----------------------------------------------------------------------


def test_missing_local_paths_fail_clearly(tmp_path):
    for missing in (str(tmp_path / "nope"), "./no/such/dir", str(tmp_path / "model.gguf")):
        with pytest.raises(ModelNotFoundError, match="does not exist"):
            load_model(missing)
    with pytest.raises(ModelNotFoundError, match="config.json"):
        load_model(str(tmp_path))  # a directory with no model in it


def test_unknown_hub_id_offline_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    with pytest.raises(ModelNotFoundError, match="could not be found.*HF_HUB_OFFLINE"):
        load_model("no-such-org/no-such-model-zz9")


def test_a_non_gguf_file_is_rejected(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\0")
    with pytest.raises(ValueError, match="gguf"):
        load_model(str(path))


# --- GGUF ----------------------------------------------------------------------------------------


def _permute_for_gguf(weight: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's q/k row order (convert_hf_to_gguf.py `LlamaModel.permute`); transformers undoes it."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def write_tiny_gguf(model, tokenizer, path: Path) -> Path:
    """Write a Llama `model` and byte-level BPE `tokenizer` as an F32 GGUF, llama.cpp key names."""
    gguf = pytest.importorskip("gguf")
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(c.rope_parameters["rope_theta"])
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_vocab_size(c.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.get)
    special = set(tokenizer.all_special_ids)
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL
                            for i in range(len(tokens))])
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)
    writer.add_add_bos_token(True)
    writer.add_chat_template(tokenizer.chat_template)

    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"])
    for i in range(c.num_hidden_layers):
        p = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.attn_q.weight",
                          _permute_for_gguf(sd[p + "self_attn.q_proj.weight"], c.num_attention_heads))
        writer.add_tensor(f"blk.{i}.attn_k.weight",
                          _permute_for_gguf(sd[p + "self_attn.k_proj.weight"], c.num_key_value_heads))
        writer.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        writer.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    writer.add_tensor("output_norm.weight", sd["model.norm.weight"])
    writer.add_tensor("output.weight", sd["lm_head.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny_gguf(tiny, tmp_path_factory):
    model, tokenizer = tiny
    return write_tiny_gguf(model, tokenizer, tmp_path_factory.mktemp("gguf") / "tiny-f32.gguf")


def test_gguf_loads_as_a_plain_model_with_the_same_logits_and_tokens(tiny, tiny_gguf):
    model, tokenizer = tiny
    loaded, loaded_tok = load_model(str(tiny_gguf))
    assert type(loaded).__name__ == "LlamaForCausalLM"
    assert not is_gguf_loaded(loaded)
    text = "Person 3 was born in city 8 — émigré 🙂"
    assert loaded_tok(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded_tok.pad_token_id == tokenizer.pad_token_id
    assert torch.allclose(_logits(loaded, loaded_tok), _logits(model, tokenizer), atol=1e-5)


def test_save_model_handles_a_raw_gguf_load(tiny, tiny_gguf, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tokenizer = tiny
    raw = AutoModelForCausalLM.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)
    raw_tok = AutoTokenizer.from_pretrained(tiny_gguf.parent, gguf_file=tiny_gguf.name)
    assert is_gguf_loaded(raw)  # transformers would refuse raw.save_pretrained
    out = save_model(raw, raw_tok, tmp_path / "from-gguf")
    reloaded, reloaded_tok = load_model(str(out))
    assert torch.allclose(_logits(reloaded, reloaded_tok), _logits(model, tokenizer), atol=1e-5)
