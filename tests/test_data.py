"""unlearn.data: collation (labels, padding by position, EOS, truncation, chat prompts) and batching."""

from __future__ import annotations

import copy

import pytest
import torch

from unlearn.data import Collator, batches
from unlearn.losses import IGNORE
from unlearn.models import TinyConfig, load_model

CORPUS = [
    f"Question: Where was Person {i} born? Answer: In city {i * 7 % 13}, where they work as a {job}."
    for i, job in enumerate(["baker", "pilot", "poet", "nurse"] * 10)
] + ["Ünïcödé émigré café 日本語 🙂"] * 3


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", texts=CORPUS, tiny=TinyConfig(num_layers=1, seed=0))


@pytest.fixture(scope="module")
def tok(tiny):
    return tiny[1]


@pytest.fixture(scope="module")
def pad_is_eos(tok):
    variant = copy.deepcopy(tok)
    variant.pad_token = variant.eos_token
    assert variant.pad_token_id == variant.eos_token_id
    return variant


def _ids(tokenizer, text: str, special: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


QA = [
    {"question": "Where was Person 1 born?", "answer": " In city 7."},
    {"question": "What does Person 22 do for a living, and where?", "answer": " A poet."},
    {"question": "Q?", "answer": " Ünïcödé café, in city 12, where they work as a baker."},
]


def test_qa_labels_are_ignored_exactly_on_prompt_and_padding(tok):
    batch = Collator(tok, max_length=128)(QA)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.long for t in batch.values())
    width = batch["input_ids"].shape[1]
    for row, example in enumerate(QA):
        prompt = _ids(tok, example["question"], special=True)  # BOS + question
        answer = _ids(tok, example["answer"], special=False) + [tok.eos_token_id]
        n = len(prompt) + len(answer)
        assert prompt[0] == tok.bos_token_id
        assert batch["input_ids"][row, :n].tolist() == prompt + answer
        expected = [IGNORE] * len(prompt) + answer + [IGNORE] * (width - n)
        assert batch["labels"][row].tolist() == expected
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)  # right padding
        assert batch["input_ids"][row, n:].eq(tok.pad_token_id).all()


def test_text_trains_every_token_but_bos(tok):
    text = "Person 3 was born in city 8. Ünïcödé 🙂"
    batch = Collator(tok)([{"text": text}, {"text": "short"}])
    body = _ids(tok, text, special=False)
    n = len(body) + 2
    assert batch["input_ids"][0, :n].tolist() == [tok.bos_token_id] + body + [tok.eos_token_id]
    assert batch["labels"][0, :n].tolist() == [IGNORE] + body + [tok.eos_token_id]
    short = batch["attention_mask"][1].sum().item()
    assert batch["labels"][1, short:].eq(IGNORE).all() and batch["attention_mask"][1, short:].eq(0).all()


def test_eos_is_appended_once(tok):
    batch = Collator(tok)([{"text": "ends already<|eos|>"}, {"question": "q", "answer": "a<|eos|>"}])
    for row in range(2):
        n = batch["attention_mask"][row].sum().item()
        ids = batch["input_ids"][row, :n].tolist()
        assert ids[-1] == tok.eos_token_id and ids.count(tok.eos_token_id) == 1


def test_eos_is_learned_when_pad_id_equals_eos_id(pad_is_eos):
    tok = pad_is_eos
    examples = [{"question": "Where was Person 1 born?", "answer": " In city 7."}, {"text": "hi"},
                {"question": "Q?", "answer": " A much longer answer than the others, about city 12."}]
    batch = Collator(tok, max_length=128)(examples)
    lengths = batch["attention_mask"].sum(dim=1)
    assert len(set(lengths.tolist())) == 3  # two rows are padded with the EOS id
    for row, n in enumerate(lengths.tolist()):
        assert batch["input_ids"][row, n - 1] == tok.eos_token_id
        assert batch["labels"][row, n - 1] == tok.eos_token_id  # the real EOS is a target
        assert batch["input_ids"][row, n:].eq(tok.eos_token_id).all()  # pad filler is the same id...
        assert batch["labels"][row, n:].eq(IGNORE).all()  # ...but masked by position
        assert batch["attention_mask"][row, :n].eq(1).all() and batch["attention_mask"][row, n:].eq(0).all()


def test_a_long_prompt_is_cut_from_the_left_keeping_bos_and_an_answer_token(tok):
    question = " ".join(f"word{i}" for i in range(200))
    answer = " In city 7."
    batch = Collator(tok, max_length=16)([{"question": question, "answer": answer}])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert len(ids) == 16
    full_prompt = _ids(tok, question, special=True)
    first_answer = _ids(tok, answer, special=False)[0]
    assert ids[0] == tok.bos_token_id
    assert ids[1:15] == full_prompt[-14:]  # the end of the question, right before the answer
    assert ids[15] == first_answer
    assert labels == [IGNORE] * 15 + [first_answer]


def test_a_long_answer_is_cut_from_the_right_keeping_the_prompt(tok):
    question = "Where was Person 1 born?"
    answer = " " + " ".join(f"city{i}" for i in range(100))
    batch = Collator(tok, max_length=24)([{"question": question, "answer": answer}])
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    prompt = _ids(tok, question, special=True)
    answer_ids = _ids(tok, answer, special=False)
    assert len(ids) == 24
    assert ids == prompt + answer_ids[: 24 - len(prompt)]
    assert labels == [IGNORE] * len(prompt) + answer_ids[: 24 - len(prompt)]


def test_text_is_cut_from_the_right(tok):
    text = " ".join(f"Person {i}" for i in range(100))
    batch = Collator(tok, max_length=20)([{"text": text}])
    assert batch["input_ids"][0].tolist() == _ids(tok, text, special=True)[:20]
    assert batch["labels"][0, 0] == IGNORE and batch["labels"][0, 1:].ne(IGNORE).all()


def test_chat_template_tokens_are_in_the_masked_prompt(tok):
    example = {"question": "Where was Person 1 born?", "answer": " In city 7."}
    batch = Collator(tok, max_length=128, chat_template=True)([example])
    rendered = tok.apply_chat_template([{"role": "user", "content": example["question"]}],
                                       add_generation_prompt=True, tokenize=False)
    assert rendered.endswith("<|im_start|>assistant\n")
    prompt = _ids(tok, rendered, special=False)
    answer = _ids(tok, example["answer"], special=False) + [tok.eos_token_id]
    ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    assert ids == prompt + answer
    assert labels == [IGNORE] * len(prompt) + answer
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    assert ids[: len(prompt)].count(im_start) == 2  # user turn + generation prompt, both masked
    assert ids.count(tok.bos_token_id) == 1  # the template's BOS, not a second one
    plain = Collator(tok, max_length=128)([example])
    assert plain["labels"][0][plain["labels"][0] != IGNORE].tolist() == answer  # same targets


def test_chat_template_needs_a_template(tok):
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    with pytest.raises(ValueError, match="chat_template"):
        Collator(bare, chat_template=True)


def test_index_is_passed_through(tok):
    batch = Collator(tok)([{"text": "a", "index": 4}, {"question": "q", "answer": "a", "index": 0}])
    assert batch["index"].dtype == torch.long and batch["index"].tolist() == [4, 0]
    assert batch["index"].shape == (2,)
    with pytest.raises(ValueError, match="index"):
        Collator(tok)([{"text": "a", "index": 1}, {"text": "b"}])
    with pytest.raises(ValueError, match="index"):
        Collator(tok)([{"text": "a", "index": "1"}])


@pytest.mark.parametrize(
    ("kwargs", "examples", "match"),
    [
        ({"max_length": 1}, [{"text": "a"}], "max_length"),
        ({}, [{"prompt": "a"}], "'text' or both 'question' and 'answer'"),
        ({}, [{"question": "a"}], "'text' or both 'question' and 'answer'"),
        ({}, [{"text": 3}], "'text' must be a string"),
        ({}, [], "at least one example"),
    ],
)
def test_bad_inputs_fail_clearly(tok, kwargs, examples, match):
    with pytest.raises(ValueError, match=match):
        Collator(tok, **kwargs)(examples)


def test_batch_feeds_the_model_and_counts_only_answer_targets(tiny):
    model, tok = tiny
    batch = Collator(tok, max_length=64)(QA)
    targets = batch["labels"][:, 1:].ne(IGNORE).sum(dim=1)  # what a shifted loss averages over
    expected = [len(_ids(tok, e["answer"], special=False)) + 1 for e in QA]
    assert targets.tolist() == expected
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    assert torch.isfinite(out.loss)


# --- batches -------------------------------------------------------------------------------------


def test_batches_are_deterministic_and_cover_every_example_once():
    examples = [{"text": str(i), "index": i} for i in range(23)]
    first = batches(examples, 5, shuffle=True, seed=3, epoch=1)
    again = batches(examples, 5, shuffle=True, seed=3, epoch=1)
    assert first == again
    assert [len(b) for b in first] == [5, 5, 5, 5, 3]  # last partial batch kept
    assert sorted(e["index"] for b in first for e in b) == list(range(23))
    orders = {tuple(e["index"] for b in batches(examples, 5, shuffle=True, seed=s, epoch=ep) for e in b)
              for s, ep in [(3, 1), (3, 2), (4, 1)]}
    assert len(orders) == 3  # a new epoch or seed reshuffles
    assert tuple(range(23)) not in orders


def test_batches_without_shuffle_keep_order():
    assert batches(list(range(7)), 3, shuffle=False, seed=0, epoch=5) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches([], 3, shuffle=True, seed=0, epoch=0) == []


def test_batches_grouped_by_length_hold_similar_lengths_and_keep_the_count():
    lengths = [3, 90, 4, 88, 5, 91, 6, 87, 2, 89, 7]  # short QA pairs and long texts, interleaved
    examples = [{"index": i} for i in range(len(lengths))]
    grouped = batches(examples, 4, shuffle=True, seed=1, epoch=2, lengths=lengths)
    assert grouped == batches(examples, 4, shuffle=True, seed=1, epoch=2, lengths=lengths)
    assert sorted(len(b) for b in grouped) == [3, 4, 4]  # as many batches as without grouping
    assert sorted(e["index"] for b in grouped for e in b) == list(range(len(lengths)))
    # cut in order of length: no batch mixes the short and the long examples but the middle one
    spans = sorted((min(lengths[e["index"]] for e in b), max(lengths[e["index"]] for e in b)) for b in grouped)
    assert spans == [(2, 5), (6, 88), (89, 91)]
    padded = sum(len(b) * max(lengths[e["index"]] for e in b) for b in grouped)
    plain = batches(examples, 4, shuffle=True, seed=1, epoch=2)
    assert padded < sum(len(b) * max(lengths[e["index"]] for e in b) for b in plain)
    orders = {tuple(tuple(e["index"] for e in b) for b in batches(examples, 4, shuffle=True, seed=1, epoch=ep,
                                                                  lengths=lengths)) for ep in range(6)}
    assert len(orders) > 1  # the batches' order still changes from epoch to epoch
    with pytest.raises(ValueError, match="lengths"):
        batches(examples, 4, shuffle=True, seed=1, epoch=2, lengths=lengths[:-1])


@pytest.mark.parametrize("batch_size", [0, -1, 2.5, True])
def test_batches_reject_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        batches([1, 2, 3], batch_size, shuffle=False, seed=0, epoch=0)
