"""A tiny Llama over raw token ids and an id-level collate, for fast exact tests of the loop."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM

VOCAB = 40


def toy_model(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).to(dtype)


def toy_examples(n, seed=0, prompt=2):
    """Sequences of unequal length; the first ``prompt`` tokens are not trained on. Each is also a
    question-answer example (``answer`` None: the ids' own), so the IdK methods can pair it with a
    refusal (a string ``answer``, which ``toy_collate`` turns into ids after the prompt)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = 4 + int(torch.randint(0, 7, (1,), generator=g))
        out.append({"ids": torch.randint(1, VOCAB, (length,), generator=g).tolist(), "prompt": prompt,
                    "question": "", "answer": None})
    return out


def _ids(example):
    if isinstance(example.get("answer"), str):  # a refusal: its characters as ids, after the prompt
        return example["ids"][:example["prompt"]] + [1 + ord(c) % (VOCAB - 1) for c in example["answer"][:8]]
    return example["ids"]


def toy_collate(examples):
    width = max(len(_ids(e)) for e in examples)
    ids = torch.zeros(len(examples), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, e in enumerate(examples):
        n = len(_ids(e))
        ids[row, :n] = torch.tensor(_ids(e))
        mask[row, :n] = 1
        labels[row, e["prompt"]:n] = ids[row, e["prompt"]:n]
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if all("index" in e for e in examples):
        batch["index"] = torch.tensor([e["index"] for e in examples])
    return batch
