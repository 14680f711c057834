"""Model loading: one entry point, `load_model(name)`, for every place a model comes from.

`name` is one of
- `"tiny"`: a small randomly initialised `LlamaForCausalLM` and a byte-level BPE tokenizer trained
  in-process on `texts` (tests, demos, CI: no download, deterministic per `TinyConfig.seed`);
- a local directory in Hugging Face layout (`config.json` + safetensors + tokenizer files);
- a local `.gguf` file (llama.cpp format, e.g. SmolLM2-135M-Instruct Q4_1): dequantised on load
  and rebuilt as a plain model, because transformers 5.x refuses `save_pretrained` on a model
  loaded from GGUF;
- anything else: a Hugging Face hub id. With `HF_HUB_OFFLINE=1` only the local cache is used.

`save_model` writes a standard directory (safetensors) that `load_model(out_dir)` reads back.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from unlearn.validate import check, check_int, is_int

BOS_TOKEN = "<|bos|>"
EOS_TOKEN = "<|eos|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
TINY_SPECIAL_TOKENS = (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IM_START, IM_END)

# ChatML, as SmolLM2-Instruct and Qwen use it, without a default system prompt; BOS written by the
# template because transformers tokenises a rendered chat with add_special_tokens=False.
TINY_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


class ModelNotFoundError(FileNotFoundError):
    """No model under that name: not a local directory or GGUF file, and not reachable on the hub."""


@dataclass(frozen=True)
class TinyConfig:
    """Shape of the `"tiny"` preset: a Llama small enough to train in seconds on a CPU."""

    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 4
    intermediate_size: int = 128
    max_position_embeddings: int = 512
    vocab_size: int = 1024  # BPE target; the trained vocabulary may be smaller on little text
    tie_word_embeddings: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        for field in ("hidden_size", "num_layers", "num_heads", "num_kv_heads", "intermediate_size",
                      "max_position_embeddings"):
            check_int(f"TinyConfig.{field}", getattr(self, field), 1)
        check(self.hidden_size % self.num_heads == 0, "TinyConfig.hidden_size",
              f"divisible by num_heads ({self.num_heads})", self.hidden_size)
        check(self.num_heads % self.num_kv_heads == 0, "TinyConfig.num_heads",
              f"divisible by num_kv_heads ({self.num_kv_heads})", self.num_heads)
        head_size = self.hidden_size // self.num_heads
        check(head_size % 2 == 0, "TinyConfig head size hidden_size/num_heads", "even (rotary)", head_size)
        minimum = 256 + len(TINY_SPECIAL_TOKENS)
        check(is_int(self.vocab_size) and self.vocab_size >= minimum, "TinyConfig.vocab_size",
              f"an integer >= {minimum} (256 bytes + special tokens)", self.vocab_size)


# ---------------------------------------------------------------------------------------------
# dtype


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """`"float32"|"bfloat16"|"float16"` or a floating `torch.dtype` -> `torch.dtype`."""
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype}")
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


# ---------------------------------------------------------------------------------------------
# the tiny preset


def train_tiny_tokenizer(texts: Sequence[str], vocab_size: int = 1024):
    """A byte-level BPE (GPT-2 style) trained on `texts`, as a `PreTrainedTokenizerFast`.

    Special tokens `<|bos|>`, `<|eos|>`, `<|pad|>` (pad distinct from eos), `<|im_start|>`,
    `<|im_end|>` take ids 0..4; encoding prepends BOS; the chat template is ChatML.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = _check_texts(texts)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(TINY_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable: no unknowns
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    bos_id = backend.token_to_id(BOS_TOKEN)
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A $B:1", special_tokens=[(BOS_TOKEN, bos_id)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START, IM_END],
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def _check_texts(texts: Sequence[str] | None) -> list[str]:
    if texts is None or isinstance(texts, str):
        raise ValueError("texts: the 'tiny' model needs a list of strings to train its tokenizer on, "
                         f"got {type(texts).__name__}")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts) or not any(t.strip() for t in texts):
        raise ValueError("texts: the 'tiny' model needs a non-empty list of non-blank strings")
    return texts


def build_tiny_model(tokenizer, config: TinyConfig):
    """A randomly initialised `LlamaForCausalLM` sized by `config`, vocab = len(tokenizer)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    llama_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    # fork_rng: seed the init without disturbing the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(llama_config)
    return model


def load_tiny(texts: Sequence[str] | None, config: TinyConfig | None = None):
    """(model, tokenizer) for the `"tiny"` preset, fp32."""
    config = config or TinyConfig()
    tokenizer = train_tiny_tokenizer(texts, vocab_size=config.vocab_size)
    return build_tiny_model(tokenizer, config), tokenizer


# ---------------------------------------------------------------------------------------------
# local directories, GGUF files, the hub


def _load_pretrained(source: str, dtype: torch.dtype, trust_remote_code: bool, **kwargs: Any):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(
        source, dtype=dtype, trust_remote_code=trust_remote_code, **kwargs
    )
    return model, tokenizer


def load_local_dir(path: Path, dtype: torch.dtype, trust_remote_code: bool = False):
    """A Hugging Face model directory on disk; never touches the network."""
    if not (path / "config.json").is_file():
        raise ModelNotFoundError(f"no model in local directory {str(path)!r}: config.json is missing")
    return _load_pretrained(str(path), dtype, trust_remote_code, local_files_only=True)


def load_gguf(path: Path, dtype: torch.dtype, trust_remote_code: bool = False):
    """A llama.cpp GGUF file, dequantised and rebuilt as a plain (saveable, trainable) model."""
    model, tokenizer = _load_pretrained(
        str(path.parent), dtype, trust_remote_code, gguf_file=path.name, local_files_only=True
    )
    return as_plain_model(model).to(dtype), tokenizer


def load_from_hub(name: str, dtype: torch.dtype, trust_remote_code: bool = False):
    """A hub id; with HF_HUB_OFFLINE=1 only the local cache is consulted."""
    offline = hub_offline()
    try:
        return _load_pretrained(name, dtype, trust_remote_code, local_files_only=offline)
    except OSError as err:
        where = ("in the local cache (HF_HUB_OFFLINE=1, the hub is not consulted)" if offline
                 else "locally or on the Hugging Face hub")
        raise ModelNotFoundError(
            f"model {name!r} could not be found {where}; pass a local directory, a .gguf file, "
            f"or 'tiny' (cause: {type(err).__name__}, chained below)"
        ) from err


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` is 1, on, yes or true; read at each call (huggingface_hub reads it at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def _looks_like_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith((".", "~")) or name.endswith(".gguf")


def ensure_pad_token(tokenizer) -> None:
    """Give a tokenizer without a pad token one: EOS (or BOS) is fine, as collation masks by position."""
    if tokenizer.pad_token is not None:
        return
    fallback = tokenizer.eos_token or tokenizer.bos_token or tokenizer.unk_token
    if fallback is None:
        raise ValueError("tokenizer has no pad, eos, bos or unk token to pad with")
    tokenizer.pad_token = fallback
    tokenizer.padding_side = "right"  # the collator pads right; generation code sets left itself


def _sync_special_ids(model, tokenizer) -> None:
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None:
        generation_config.pad_token_id = tokenizer.pad_token_id


def load_model(
    name: str,
    *,
    dtype: str | torch.dtype = "float32",
    trust_remote_code: bool = False,
    texts: Sequence[str] | None = None,
    tiny: TinyConfig | None = None,
):
    """(model, tokenizer) for `"tiny"`, a local directory, a `.gguf` file or a hub id (see module doc)."""
    torch_dtype = resolve_dtype(dtype)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be 'tiny', a local directory, a .gguf file or a hub id, got {name!r}")
    if name != "tiny" and tiny is not None:
        raise ValueError(f"tiny: a TinyConfig is only allowed with name='tiny', got name={name!r}")
    path = Path(name).expanduser()
    if name == "tiny":
        model, tokenizer = load_tiny(texts, tiny)
        model = model.to(torch_dtype)
    elif path.is_file() and path.suffix == ".gguf":
        model, tokenizer = load_gguf(path, torch_dtype, trust_remote_code)
    elif path.is_dir():
        model, tokenizer = load_local_dir(path, torch_dtype, trust_remote_code)
    elif path.exists():
        raise ValueError(f"name {name!r} is a file but not a .gguf file; pass a model directory instead")
    elif _looks_like_path(name):
        raise ModelNotFoundError(f"model path {name!r} does not exist (no such directory or .gguf file)")
    else:
        model, tokenizer = load_from_hub(name, torch_dtype, trust_remote_code)
    ensure_pad_token(tokenizer)
    _sync_special_ids(model, tokenizer)
    return model, tokenizer


def checkpoint_activations(model) -> None:
    """Gradient checkpointing of every decoder layer, non-reentrant (``use_reentrant=False``): the
    forward keeps only each layer's input, and the backward recomputes one layer's activations at a
    time from it (one more forward per training pass). Only in training mode; the training passes
    use no KV cache (``unlearn.step`` passes ``use_cache=False``), evaluation keeps its own."""
    kwargs = {"use_reentrant": False}
    enable = getattr(model, "activation_checkpointing_enable", None)  # the name since transformers 5.x
    if enable is not None:
        enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


# ---------------------------------------------------------------------------------------------
# saving


def is_gguf_loaded(model) -> bool:
    """Whether `model` still carries the quantisation markers a GGUF load leaves."""
    return (getattr(model.config, "quantization_config", None) is not None
            or getattr(model, "hf_quantizer", None) is not None
            or bool(getattr(model, "is_quantized", False)))


def as_plain_model(model):
    """`model` rebuilt without quantisation markers (same class, config, weights), so it saves.

    transformers 5.x refuses `save_pretrained` on a model loaded from GGUF; the weights are already
    dequantised, so a fresh instance of the same class with the same state dict is equivalent.
    """
    if not is_gguf_loaded(model):
        return model
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    dtype = next(model.parameters()).dtype
    plain = type(model)(config).to(dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    if getattr(model, "generation_config", None) is not None:
        plain.generation_config = copy.deepcopy(model.generation_config)
    plain.train(model.training)
    return plain


def save_model(model, tokenizer, out_dir: str | os.PathLike) -> Path:
    """Write `model` (safetensors) and `tokenizer` to `out_dir`, loadable by `load_model(out_dir)`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    as_plain_model(model).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
