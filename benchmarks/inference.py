"""Inference for the benchmarks: batched greedy generation and token log-probabilities.

All model-touching inference of the `benchmarks` package lives here; metric functions take what
these functions return (strings, floats, tensors) and never call a model.

- Generation is greedy, ``x_{t+1} = argmax_v p(v | x_<=t)``, in batches sorted by prompt length and
  LEFT-padded, with a KV cache and position ids computed from the attention mask (``cumsum - 1``):
  a padded row sees exactly the positions and keys it would see alone, so batched output equals
  one-at-a-time output. Rows stop at an end token (EOS, the model's extra EOS ids, a chat
  end-of-turn token, ``stop_token_ids``), at a stop string, or after ``max_new_tokens``; finished
  rows leave the batch (their cache rows are dropped) so they cost nothing further.
- Log-probabilities follow the causal alignment of the whole repository (``unlearn.losses.shift``):
  ``logits[:, :-1]`` predicts ``ids[:, 1:]``, i.e. ``lp_t = log p(x_t | x_<t)`` for ``t = 1..n-1``,
  computed as ``z[x_t] - logsumexp(z)`` in float32 on RIGHT-padded batches.

Everything runs under ``model.eval()`` (the caller's training mode is restored afterwards) and
without autograd; ``autocast=True`` runs the forward passes under bf16 autocast while results stay
float32 (off by default: on the 2-core CPU of ``docs/demo.md`` it measured slower than fp32, so
measure first). Under autocast, batched and one-at-a-time results may differ:
bf16 rounding depends on the batch shape.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from unlearn.losses import IGNORE, shift

Progress = Callable[[int, int], None]
TokenIds = Sequence[int]

# Chat end-of-turn tokens that end a generation when the tokenizer has them as special tokens
# (ChatML / SmolLM2 / Qwen, Llama 3, Gemma, Phi-3). Continuing past one only starts a new turn.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>")
# Prompt tokens decoded in front of the new tokens, so that the new text keeps the leading space a
# SentencePiece decoder drops at the start of a sequence (" Paris", not "Paris").
_DECODE_CONTEXT = 8
STOP_REASONS = ("eos", "stop", "length")


@dataclass(frozen=True)
class Generation:
    """One greedy generation: the new text, the ids generated, and why it ended.

    `token_ids` are all generated ids, the end token excluded; with ``stop_reason == "stop"`` they
    may run past the stop string, which `text` is cut before.
    """

    text: str
    token_ids: tuple[int, ...]
    stop_reason: str  # one of STOP_REASONS


@dataclass(frozen=True)
class CompletionScore:
    """Log-probability of a completion given its prompt: the sum and the per-token values."""

    logprob: float
    token_logprobs: Tensor  # (n_completion,) float32
    predicted: Tensor | None = None  # (n_completion,) long: the argmax id at each completion position

    @property
    def num_tokens(self) -> int:
        return int(self.token_logprobs.numel())

    @property
    def mean_logprob(self) -> float:
        return self.logprob / self.num_tokens


# ---------------------------------------------------------------------------------------------
# shared plumbing


def model_device(model) -> torch.device:
    """The device of the model's first parameter (inputs are moved there)."""
    return next(model.parameters()).device


@contextlib.contextmanager
def _inference(model, autocast: bool):
    """eval mode, no autograd and optional bf16 autocast; the training mode is restored on exit.

    no_grad, not inference_mode: under inference_mode autocast does not cache its bf16 copies of
    the weights and re-casts them on every forward (measured: 1.8x slower decoding than fp32).
    """
    was_training = model.training
    device_type = model_device(model).type
    model.eval()
    try:
        with torch.no_grad(), torch.autocast(device_type, dtype=torch.bfloat16, enabled=autocast):
            yield
    finally:
        model.train(was_training)


def _forward_kwargs(model) -> tuple[str, bool]:
    """(name of the cache keyword, whether `logits_to_keep` is accepted) for this model's forward.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name is deprecated).
    """
    params = inspect.signature(model.forward).parameters
    cache_name = "cache" if "cache" in params else "past_key_values"
    return cache_name, "logits_to_keep" in params


def _check_batch_size(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


def _batches(order: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    for start in range(0, len(order), batch_size):
        yield list(order[start:start + batch_size])


def _longest_first(lengths: Sequence[int]) -> list[int]:
    """Indices sorted by decreasing length (stable): similar lengths share a batch, and the
    largest batch runs first so that an out-of-memory error shows at once."""
    return sorted(range(len(lengths)), key=lambda i: -lengths[i])


def _as_ids(ids, name: str, min_len: int) -> list[int]:
    """`ids` (a list or 1-D tensor of token ids) as a list, validated."""
    if isinstance(ids, Tensor):
        ids = ids.tolist()
    if isinstance(ids, (str, bytes)) or not all(isinstance(t, int) and t >= 0 for t in ids):
        raise ValueError(f"{name} must be a string or a list of non-negative int token ids")
    if len(ids) < min_len:
        raise ValueError(f"{name} must have at least {min_len} token(s), got {len(ids)}")
    return list(ids)


def _check_ids(ids_list: Sequence[TokenIds], name: str, min_len: int = 1) -> list[list[int]]:
    if isinstance(ids_list, (str, Tensor)):
        raise ValueError(f"{name} must be a list of token id lists, got {type(ids_list).__name__}")
    return [_as_ids(ids, f"{name}[{i}]", min_len) for i, ids in enumerate(ids_list)]


def encode(tokenizer, texts: Sequence[str] | Sequence[TokenIds], *, add_special_tokens: bool = True,
           name: str = "prompts") -> list[list[int]]:
    """Token ids of each item: strings are tokenized, id lists are kept as they are."""
    if isinstance(texts, str):
        raise ValueError(f"{name} must be a list of strings or token id lists, not a str")
    out = []
    for i, item in enumerate(texts):
        if isinstance(item, str):
            item = tokenizer(item, add_special_tokens=add_special_tokens)["input_ids"]
        out.append(_as_ids(item, f"{name}[{i}]", min_len=1))
    return out


def _pad_id(tokenizer) -> int:
    for candidate in (tokenizer.pad_token_id, tokenizer.eos_token_id, 0):
        if candidate is not None:
            return int(candidate)
    return 0


def _pad(ids_list: Sequence[list[int]], pad_id: int, side: str, device) -> tuple[Tensor, Tensor]:
    """(ids, attention_mask), both (B, T) long, padded on `side`."""
    width = max(len(ids) for ids in ids_list)
    ids = torch.full((len(ids_list), width), pad_id, dtype=torch.long)  # (B, T)
    mask = torch.zeros_like(ids)  # (B, T)
    for row, seq in enumerate(ids_list):
        span = slice(width - len(seq), width) if side == "left" else slice(0, len(seq))
        ids[row, span] = torch.tensor(seq, dtype=torch.long)
        mask[row, span] = 1
    return ids.to(device), mask.to(device)


# ---------------------------------------------------------------------------------------------
# generation


def end_token_ids(model, tokenizer, extra: Sequence[int] = ()) -> frozenset[int]:
    """Ids that end a generation: the tokenizer's EOS, the model's generation-config EOS ids, the
    chat end-of-turn tokens the tokenizer has as special tokens, and `extra`."""
    ids: set[int] = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    config_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if config_eos is not None:
        ids.update(int(i) for i in ([config_eos] if isinstance(config_eos, int) else config_eos))
    specials = {tok.content: idx for idx, tok in tokenizer.added_tokens_decoder.items() if tok.special}
    ids.update(specials[name] for name in END_OF_TURN_TOKENS if name in specials)
    for i, token_id in enumerate(extra):
        if not isinstance(token_id, int) or token_id < 0:
            raise ValueError(f"stop_token_ids[{i}] must be a non-negative int, got {token_id!r}")
        ids.add(token_id)
    return frozenset(ids)


def _check_stop(stop: Sequence[str]) -> tuple[str, ...]:
    if isinstance(stop, str):
        raise ValueError(f"stop must be a sequence of strings, not a str (did you mean [{stop!r}]?)")
    stop = tuple(stop)
    if not all(isinstance(s, str) and s for s in stop):
        raise ValueError(f"stop must hold non-empty strings, got {stop!r}")
    return stop


def new_text(tokenizer, prompt_ids: Sequence[int], new_ids: Sequence[int]) -> str:
    """The text that `new_ids` add after `prompt_ids`, special tokens skipped.

    Decoded behind the last few prompt tokens and cut at the prompt's text, so a leading space is
    kept by tokenizers whose decoder strips it at the start of a sequence.
    """
    context = list(prompt_ids[-_DECODE_CONTEXT:])
    prefix = tokenizer.decode(context, skip_special_tokens=True)
    full = tokenizer.decode(context + list(new_ids), skip_special_tokens=True)
    if full.startswith(prefix):
        return full[len(prefix):]
    return tokenizer.decode(list(new_ids), skip_special_tokens=True)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`text` cut before the earliest occurrence of any stop string, and whether one occurred."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[:min(hits)], True) if hits else (text, False)


class _Decoder:
    """One batch's token bookkeeping and stop checks, indexed by the row in the batch."""

    def __init__(self, tokenizer, prompts: list[list[int]], end_ids: frozenset[int], stop: tuple[str, ...]):
        self.tokenizer, self.prompts, self.end_ids, self.stop = tokenizer, prompts, end_ids, stop
        self.new: list[list[int]] = [[] for _ in prompts]
        self.reason = ["length"] * len(prompts)

    def push(self, row: int, token_id: int) -> bool:
        """Record `token_id` for `row`; True when the row has ended."""
        if token_id in self.end_ids:
            self.reason[row] = "eos"
            return True
        self.new[row].append(token_id)
        if self.stop and cut_at_stop(self.text(row), self.stop)[1]:
            self.reason[row] = "stop"
            return True
        return False

    def text(self, row: int) -> str:
        return new_text(self.tokenizer, self.prompts[row], self.new[row])

    def results(self) -> list[Generation]:
        out = []
        for row, reason in enumerate(self.reason):
            text, _ = cut_at_stop(self.text(row), self.stop)
            out.append(Generation(text=text, token_ids=tuple(self.new[row]), stop_reason=reason))
        return out


def _next_logits(model, ids: Tensor, mask: Tensor, positions: Tensor, kwargs: dict) -> Tensor:
    """(B, V) float32 logits of the last position; extends the cache in `kwargs` in place."""
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **kwargs)
    return out.logits[:, -1].float()  # (B, V)


def _greedy_batch(model, decoder: _Decoder, pad_id: int, max_new_tokens: int) -> None:
    """Greedy decoding of one batch with a KV cache; finished rows are dropped from the batch."""
    from transformers import DynamicCache

    ids, mask = _pad(decoder.prompts, pad_id, "left", model_device(model))  # (B, T), (B, T)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): left padding does not shift positions
    cache = DynamicCache(config=model.config)
    cache_name, keep_last = _forward_kwargs(model)
    kwargs = {cache_name: cache, "logits_to_keep": 1} if keep_last else {cache_name: cache}
    logits = _next_logits(model, ids, mask, positions, kwargs)  # (B, V)
    rows = list(range(len(decoder.prompts)))  # batch position -> row of the decoder
    last = positions[:, -1]  # (B,)
    for step in range(max_new_tokens):
        next_ids = logits.argmax(dim=-1)  # (b,) first maximum on ties: deterministic
        keep = [j for j, token in enumerate(next_ids.tolist()) if not decoder.push(rows[j], token)]
        if not keep or step == max_new_tokens - 1:
            return
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(index)
            rows, mask, last, next_ids = [rows[j] for j in keep], mask[index], last[index], next_ids[index]
        mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=-1)  # (b, T + step + 1)
        last = last + 1  # (b,)
        logits = _next_logits(model, next_ids[:, None], mask, last[:, None], kwargs)  # (b, V)


def generate_detailed(
    model,
    tokenizer,
    prompts: Sequence[str] | Sequence[TokenIds],
    *,
    max_new_tokens: int,
    stop: Sequence[str] = (),
    stop_token_ids: Sequence[int] = (),
    batch_size: int = 16,
    add_special_tokens: bool = True,
    autocast: bool = False,
    progress: Progress | None = None,
) -> list[Generation]:
    """Like `generate`, with the generated ids and the reason each generation ended."""
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    _check_batch_size(batch_size)
    stop = _check_stop(stop)
    end_ids = end_token_ids(model, tokenizer, stop_token_ids)
    prompt_ids = encode(tokenizer, prompts, add_special_tokens=add_special_tokens)
    results: list[Generation | None] = [None] * len(prompt_ids)
    done = 0
    for batch in _batches(_longest_first([len(p) for p in prompt_ids]), batch_size):
        decoder = _Decoder(tokenizer, [prompt_ids[i] for i in batch], end_ids, stop)
        if max_new_tokens > 0:
            with _inference(model, autocast):
                _greedy_batch(model, decoder, _pad_id(tokenizer), max_new_tokens)
        for i, result in zip(batch, decoder.results()):
            results[i] = result
        done += len(batch)
        if progress is not None:
            progress(done, len(prompt_ids))
    return results  # type: ignore[return-value]


def generate(model, tokenizer, prompts: Sequence[str] | Sequence[TokenIds], **options) -> list[str]:
    """Greedy continuations of `prompts` (the new text only, special tokens skipped), in order.

    String prompts are tokenized with `add_special_tokens`; token id lists (e.g. a chat template
    applied by the caller) are used as they are. A row ends at an end token (see `end_token_ids`;
    `stop_token_ids` adds more), once a stop string appears in its new text (the text is cut
    before the first stop string), or after `max_new_tokens`. `progress(done, total)` is called
    after each batch. ``options`` are those of `generate_detailed` (``max_new_tokens`` required).
    """
    return [g.text for g in generate_detailed(model, tokenizer, prompts, **options)]


# ---------------------------------------------------------------------------------------------
# log-probabilities


def _labels(ids_list: list[list[int]], labels_list: Sequence[TokenIds] | None) -> list[list[int]]:
    if labels_list is None:
        return ids_list
    if len(labels_list) != len(ids_list):
        raise ValueError(f"labels_list must have one entry per sequence ({len(ids_list)}), "
                         f"got {len(labels_list)}")
    out = []
    for i, (ids, labels) in enumerate(zip(ids_list, labels_list)):
        labels = labels.tolist() if isinstance(labels, Tensor) else list(labels)
        if len(labels) != len(ids) or not all(isinstance(t, int) and (t >= 0 or t == IGNORE) for t in labels):
            raise ValueError(f"labels_list[{i}] must hold {len(ids)} token ids or {IGNORE}")
        out.append(labels)
    return out


def _batch_logits(model, ids_list: list[list[int]], labels: list[list[int]], autocast: bool):
    """(z, y, mask) of one right-padded batch: z (B, T-1, V) float32, y and mask (B, T-1)."""
    device = model_device(model)
    ids, attention = _pad(ids_list, 0, "right", device)  # (B, T); right padding: no position shift
    label_ids, _ = _pad(labels, IGNORE, "right", device)  # (B, T), IGNORE on padding
    with _inference(model, autocast):
        logits = model(input_ids=ids, attention_mask=attention, use_cache=False).logits  # (B, T, V)
    z, y, mask = shift(logits, label_ids)  # (B, T-1, V), (B, T-1), (B, T-1)
    return z.float(), y, mask


def aligned_logits(
    model,
    input_ids_list: Sequence[TokenIds],
    labels_list: Sequence[TokenIds] | None = None,
    *,
    batch_size: int = 16,
    autocast: bool = False,
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Per batch, the causally aligned ``(logits, targets, mask)``: logits (B, T-1, V) float32 where
    ``logits[b, t]`` predicts ``targets[b, t]`` (B, T-1) long, mask (B, T-1) bool of valid targets
    (padding and ignored labels are False, their targets 0), as `unlearn.losses.shift` aligns them.

    `labels_list` (default: the ids) marks ignored targets with -100. Batches follow the input
    order (sequences ``[k*batch_size, (k+1)*batch_size)`` form batch k), so two models' streams
    over the same inputs can be zipped. Only one batch of logits is alive at a time; the model is
    in eval mode only while a batch is computed.
    """
    _check_batch_size(batch_size)
    ids_list = _check_ids(input_ids_list, "input_ids_list", min_len=2)
    labels = _labels(ids_list, labels_list)
    for batch in _batches(range(len(ids_list)), batch_size):
        yield _batch_logits(model, [ids_list[i] for i in batch], [labels[i] for i in batch], autocast)


def _target_logprobs(z: Tensor, y: Tensor) -> Tensor:
    """log p(y) under logits z: (B, T-1, V), (B, T-1) -> (B, T-1), without a (B, T-1, V) copy."""
    return z.gather(-1, y.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(z, dim=-1)  # (B, T-1)


def sequence_logprobs(
    model,
    input_ids_list: Sequence[TokenIds],
    *,
    batch_size: int = 16,
    autocast: bool = False,
    progress: Progress | None = None,
) -> list[Tensor]:
    """Per sequence, a 1-D float32 CPU tensor of ``log p(x_t | x_<t)`` for ``t = 1..n-1``.

    Batches are sorted by length (right padding), results come back in input order.
    """
    return [lp for lp, _ in _sequence_outputs(model, input_ids_list, batch_size, autocast, progress, argmax=False)]


def _sequence_outputs(model, input_ids_list, batch_size: int, autocast: bool, progress: Progress | None,
                      argmax: bool) -> list[tuple[Tensor, Tensor | None]]:
    """Per sequence, ``log p(x_t | x_<t)`` for ``t = 1..n-1`` and, with ``argmax``, the argmax id of
    the distribution predicting each of those tokens (both 1-D CPU tensors), in input order."""
    _check_batch_size(batch_size)
    ids_list = _check_ids(input_ids_list, "input_ids_list", min_len=1)
    out: list = [None] * len(ids_list)
    done = 0
    for batch in _batches(_longest_first([len(ids) for ids in ids_list]), batch_size):
        rows = [ids_list[i] for i in batch]
        z, y, _ = _batch_logits(model, rows, rows, autocast)  # (B, T-1, V), (B, T-1)
        lp = _target_logprobs(z, y).cpu()  # (B, T-1)
        best = z.argmax(dim=-1).cpu() if argmax else None  # (B, T-1)
        for row, i in enumerate(batch):
            n = len(ids_list[i]) - 1
            out[i] = (lp[row, :n].clone(), best[row, :n].clone() if argmax else None)
        done += len(batch)
        if progress is not None:
            progress(done, len(ids_list))
    return out


def text_logprobs(
    model,
    tokenizer,
    texts: Sequence[str],
    *,
    add_special_tokens: bool = True,
    batch_size: int = 16,
    autocast: bool = False,
    progress: Progress | None = None,
) -> list[Tensor]:
    """`sequence_logprobs` of tokenized `texts` (with BOS by default, so the first token is scored)."""
    ids = encode(tokenizer, texts, add_special_tokens=add_special_tokens, name="texts")
    return sequence_logprobs(model, ids, batch_size=batch_size, autocast=autocast, progress=progress)


def completion_logprobs(
    model,
    tokenizer,
    prompts: Sequence[str] | Sequence[TokenIds],
    completions: Sequence[str] | Sequence[TokenIds],
    *,
    add_special_tokens: bool = True,
    batch_size: int = 16,
    autocast: bool = False,
    progress: Progress | None = None,
    predictions: bool = False,
) -> list[CompletionScore]:
    """log p(completion | prompt) for each pair, summed and per completion token; with
    ``predictions``, also the teacher-forced argmax id at each completion position.

    Prompt and completion are tokenized separately and concatenated (the prompt with
    `add_special_tokens`, the completion without), so the scored tokens are exactly the
    completion's: give the completion its leading space (``"Q: …\\nA:"`` + ``" Paris"``).
    """
    if len(prompts) != len(completions):
        raise ValueError(f"completions must have one entry per prompt ({len(prompts)}), got {len(completions)}")
    prompt_ids = encode(tokenizer, prompts, add_special_tokens=add_special_tokens, name="prompts")
    completion_ids = encode(tokenizer, completions, add_special_tokens=False, name="completions")
    full = [p + c for p, c in zip(prompt_ids, completion_ids)]
    per_seq = _sequence_outputs(model, full, batch_size, autocast, progress, argmax=predictions)
    scores = []
    for (lp, best), c in zip(per_seq, completion_ids):
        tokens = lp[-len(c):]  # (n_completion,) the last len(c) targets are the completion
        scores.append(CompletionScore(logprob=float(tokens.sum()), token_logprobs=tokens,
                                      predicted=None if best is None else best[-len(c):]))
    return scores
