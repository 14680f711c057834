"""Batching and collation for causal-LM training and scoring, in the Hugging Face convention.

`labels[b, t] = input_ids[b, t]` where position t is trained and -100 elsewhere; the losses shift
themselves (`logits[:, :-1]` predicts `labels[:, 1:]`). Two kinds of example:

- `{"text": ...}`: every token is a target except the BOS/prefix the tokenizer adds;
- `{"question": ..., "answer": ...}`: only the answer tokens and the final EOS are targets. The
  prompt is the question, or, with `chat_template=True`, the question as a user message rendered by
  the tokenizer's chat template with the generation prompt; the answer follows it.

Prompt and answer are tokenised separately and their ids concatenated, so the boundary is exact.
Every example ends with an EOS that is a target. Padding is on the right and masked *by position*
(never by comparing ids with the pad id), so a tokenizer whose pad id equals its EOS id still
learns the real EOS. An optional integer `"index"` comes back as a `(B,)` long tensor.
"""

from __future__ import annotations

import operator
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from unlearn.losses import IGNORE

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Collator:
    """Turns a list of example dicts into padded `input_ids`, `attention_mask`, `labels` (+ `index`)."""

    tokenizer: Any
    max_length: int = 256
    chat_template: bool = False
    # ids the tokenizer puts before any text (BOS for Llama-style tokenizers, nothing for GPT-2)
    _prefix: tuple[int, ...] = field(init=False, repr=False, default=())

    def __post_init__(self) -> None:
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length must be an int >= 2, got {self.max_length!r}")
        if self.tokenizer.eos_token_id is None:
            raise ValueError("tokenizer must have an eos_token (every example ends with a learned EOS)")
        if self.chat_template and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError("chat_template=True needs a tokenizer with a chat template; this one has none")
        object.__setattr__(self, "_prefix", self._special_prefix())

    def _special_prefix(self) -> tuple[int, ...]:
        ids = self.tokenizer("", add_special_tokens=True)["input_ids"]
        return tuple(i for i in ids if i != self.tokenizer.eos_token_id)

    @property
    def pad_id(self) -> int:
        """Filler id for padded positions (masked by position, so any valid id would do)."""
        pad = self.tokenizer.pad_token_id
        return self.tokenizer.eos_token_id if pad is None else pad

    # -- one example ---------------------------------------------------------------------------

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _with_eos(self, ids: list[int]) -> list[int]:
        eos = self.tokenizer.eos_token_id
        return ids if ids and ids[-1] == eos else ids + [eos]

    def encode_text(self, text: str) -> tuple[list[int], list[int]]:
        """(input_ids, labels) for plain text: all targets but the prefix; truncated on the right."""
        prefix = list(self._prefix)
        ids = prefix + self._with_eos(self._ids(text))
        labels = [IGNORE] * len(prefix) + ids[len(prefix):]
        return ids[: self.max_length], labels[: self.max_length]

    def prompt_ids(self, question: str) -> list[int]:
        """The prompt's ids: prefix + question, or the chat-templated user turn + generation prompt."""
        if not self.chat_template:
            return list(self._prefix) + self._ids(question)
        rendered = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
        # As transformers does for chats: the template writes any BOS itself.
        return self._ids(rendered)

    def encode_qa(self, question: str, answer: str) -> tuple[list[int], list[int]]:
        """(input_ids, labels) for a QA pair: targets are the answer and its EOS only."""
        prompt, answer_ids = self._fit(self.prompt_ids(question), self._with_eos(self._ids(answer)))
        return prompt + answer_ids, [IGNORE] * len(prompt) + answer_ids

    def _fit(self, prompt: list[int], answer: list[int]) -> tuple[list[int], list[int]]:
        """Cut to max_length from the right, but keep >= 1 answer token by cutting the prompt's left."""
        if len(prompt) + len(answer) <= self.max_length:
            return prompt, answer
        n_answer = max(1, min(len(answer), self.max_length - len(prompt)))
        return self._cut_left(prompt, self.max_length - n_answer), answer[:n_answer]

    def _cut_left(self, prompt: list[int], room: int) -> list[int]:
        """The last `room` prompt tokens, keeping the leading prefix (BOS) when there is room for it."""
        if len(prompt) <= room:
            return prompt
        head = len(self._prefix) if tuple(prompt[: len(self._prefix)]) == self._prefix else 0
        head = head if head < room else 0
        return prompt[:head] + prompt[len(prompt) - (room - head):]

    def encode(self, example: Mapping[str, Any], position: int = 0) -> tuple[list[int], list[int]]:
        """(input_ids, labels) for one example dict (`position` only names it in errors)."""
        if not isinstance(example, Mapping):
            raise ValueError(f"example {position}: must be a dict, got {type(example).__name__}")
        if "text" in example:
            return self.encode_text(_string(example, "text", position))
        if "question" in example and "answer" in example:
            return self.encode_qa(_string(example, "question", position), _string(example, "answer", position))
        raise ValueError(f"example {position}: needs 'text' or both 'question' and 'answer', "
                         f"got keys {sorted(example)}")

    # -- a batch --------------------------------------------------------------------------------

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        if len(examples) == 0:
            raise ValueError("examples: a batch needs at least one example, got 0")
        encoded = [self.encode(example, i) for i, example in enumerate(examples)]
        batch = pad_right(encoded, self.pad_id)
        index = _indices(examples)
        if index is not None:
            batch["index"] = index
        return batch


def _string(example: Mapping[str, Any], key: str, position: int) -> str:
    value = example[key]
    if not isinstance(value, str):
        raise ValueError(f"example {position}: '{key}' must be a string, got {type(value).__name__}")
    return value


def _indices(examples: Sequence[Mapping[str, Any]]) -> torch.Tensor | None:
    """The `(B,)` long tensor of the examples' `"index"` values, or None when no example has one."""
    present = ["index" in example for example in examples]
    if not any(present):
        return None
    if not all(present):
        raise ValueError("index: either every example in a batch has an 'index' or none does")
    values = []
    for i, example in enumerate(examples):
        value = example["index"]
        if isinstance(value, bool):
            raise ValueError(f"example {i}: 'index' must be an int, got bool")
        try:
            values.append(operator.index(value))
        except TypeError:
            raise ValueError(f"example {i}: 'index' must be an int, got {type(value).__name__}") from None
    return torch.tensor(values, dtype=torch.long)  # (B,)


def pad_right(encoded: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad (ids, labels) pairs: pad positions get `pad_id`, attention 0 and label -100."""
    width = max(len(ids) for ids, _ in encoded)
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(encoded), width), IGNORE, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(encoded), width), dtype=torch.long)  # (B, T)
    for row, (ids, labs) in enumerate(encoded):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        labels[row, : len(labs)] = torch.tensor(labs, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def batches(examples: Sequence[T], batch_size: int, *, shuffle: bool, seed: int, epoch: int,
            lengths: Sequence[int] | None = None) -> list[list[T]]:
    """`examples` cut into batches of `batch_size` (last one partial), shuffled per (seed, epoch).

    With `lengths` (one per example), the shuffled examples are sorted by length (ties keep the
    shuffled order) before they are cut, and the batches' order is shuffled again: every batch holds
    examples of similar length, so little of it is padding, and the number of batches is unchanged.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if lengths is not None and len(lengths) != len(examples):
        raise ValueError(f"lengths has {len(lengths)} entries for {len(examples)} examples")
    order = list(range(len(examples)))
    # A string seed is hashed with SHA-512 by `random`: stable across processes and platforms.
    rng = random.Random(f"batches:{int(seed)}:{int(epoch)}")
    if shuffle:
        rng.shuffle(order)
    if lengths is not None:
        order.sort(key=lambda i: lengths[i])
    cut = [order[start: start + batch_size] for start in range(0, len(order), batch_size)]
    if lengths is not None and shuffle:
        rng.shuffle(cut)
    return [[examples[i] for i in batch] for batch in cut]
