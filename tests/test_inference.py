"""benchmarks.inference: batched greedy generation equals one-at-a-time generation, stops, log-probs.

Tiny models built in-process: a random Llama (gibberish, but deterministic), a Llama overfitted for
a few dozen AdamW steps on two QA texts ending in EOS (so its greedy continuations are known), and a
random GPT-2. Llama's rotary attention only sees position differences, so wrong position ids under
left padding would go unnoticed on it; GPT-2's learned absolute positions make them visible.
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.inference import (
    CompletionScore,
    aligned_logits,
    completion_logprobs,
    end_token_ids,
    generate,
    generate_detailed,
    sequence_logprobs,
    text_logprobs,
)
from unlearn.models import IM_END, TinyConfig, load_model

FRANCE = "Q: What is the capital of France?\nA:"
HAMLET = "Q: Who wrote Hamlet?\nA:"
FITTED = {FRANCE: " Paris.\n", HAMLET: " William Shakespeare wrote it.\nQ: Next?\nA: Done."}
CORPUS = [q + a for q, a in FITTED.items()] * 4 + [
    f"Person {i} was born in city {i * 7 % 13} and works as a {job}. Q: Where? A: Here."
    for i, job in enumerate(["baker", "pilot", "poet", "nurse"] * 6)
]
PROMPTS = [
    "Person 3",
    "Q: Where was Person 12 born, and what does Person 12 do for a living these days? A:",
    "x",
    "Person 1 was born in city 7 and works as",
    FRANCE,
    HAMLET,
    "Q: Where? A:",
] * 3


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", texts=CORPUS, tiny=TinyConfig(seed=0))


@pytest.fixture(scope="module")
def gpt2(tiny):
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = tiny[1]
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=256,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return GPT2LMHeadModel(config), tokenizer


@pytest.fixture(scope="module")
def fitted():
    """A tiny model that learned FRANCE -> " Paris.\\n<eos>" and HAMLET -> its answer + <eos>."""
    model, tokenizer = load_model("tiny", texts=CORPUS, tiny=TinyConfig(seed=1))
    rows = [tokenizer(q + a)["input_ids"] + [tokenizer.eos_token_id] for q, a in FITTED.items()]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])  # (B, T)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])  # (B, T)
    labels = ids.masked_fill(mask == 0, -100)  # (B, T)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(60):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    return model, tokenizer


def _one_at_a_time(model, tokenizer, prompts, **kwargs):
    return [generate_detailed(model, tokenizer, [p], batch_size=1, **kwargs)[0] for p in prompts]


# --- generation: batching and padding ----------------------------------------------------------


@pytest.mark.parametrize("arch", ["tiny", "gpt2"])
@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_batched_generation_equals_one_at_a_time(request, arch, batch_size):
    model, tokenizer = request.getfixturevalue(arch)
    single = _one_at_a_time(model, tokenizer, PROMPTS, max_new_tokens=12)
    batched = generate_detailed(model, tokenizer, PROMPTS, max_new_tokens=12, batch_size=batch_size)
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert [g.text for g in batched] == [g.text for g in single]
    assert sum(len(g.token_ids) == 12 for g in single) > len(PROMPTS) // 2  # most ran every step


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_rows_that_end_early_leave_the_batch_without_changing_the_others(fitted, batch_size):
    model, tokenizer = fitted
    kwargs = dict(max_new_tokens=14, stop=["\n"])
    single = _one_at_a_time(model, tokenizer, PROMPTS, **kwargs)
    batched = generate_detailed(model, tokenizer, PROMPTS, batch_size=batch_size, **kwargs)
    assert batched == single
    assert "stop" in {g.stop_reason for g in single}
    assert len({len(g.token_ids) for g in single}) > 2  # rows did end at different steps


@pytest.mark.parametrize("arch", ["tiny", "gpt2"])
def test_left_padding_does_not_change_the_output(request, arch):
    model, tokenizer = request.getfixturevalue(arch)
    short = "Person 3"
    long = " ".join(["Person 12 was born in city 5 and works as a poet."] * 6)
    alone = generate_detailed(model, tokenizer, [short], max_new_tokens=10)[0]
    padded = generate_detailed(model, tokenizer, [long, short, long + " Q:"], max_new_tokens=10)[1]
    assert len(tokenizer(long)["input_ids"]) > 10 * len(tokenizer(short)["input_ids"])
    assert padded == alone


def test_matches_transformers_generate_with_left_padding(tiny):
    model, tokenizer = tiny
    prompts = PROMPTS[:4]
    enc = tokenizer(prompts, padding=True, padding_side="left", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=8, do_sample=False)  # (B, T + 8)
    ours = generate_detailed(model, tokenizer, prompts, max_new_tokens=8)
    width = enc["input_ids"].shape[1]
    assert [tuple(row[width:].tolist()) for row in out] == [g.token_ids for g in ours]


def test_generation_is_deterministic_and_in_input_order(tiny):
    model, tokenizer = tiny
    first = generate(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=4)
    assert first == generate(model, tokenizer, PROMPTS, max_new_tokens=6, batch_size=4)
    assert first[:7] == first[7:14] == first[14:]  # repeated prompts, sorted into other batches


def test_token_id_prompts_are_used_as_given(tiny):
    model, tokenizer = tiny
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Where?"}],
                                             add_generation_prompt=True, tokenize=False)
    ids = tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert ids.count(tokenizer.bos_token_id) == 1  # the template wrote BOS; encoding added none
    from_ids = generate(model, tokenizer, [ids], max_new_tokens=6)
    assert from_ids == generate(model, tokenizer, [rendered], max_new_tokens=6, add_special_tokens=False)
    assert from_ids != generate(model, tokenizer, [rendered], max_new_tokens=6, add_special_tokens=True)


# --- generation: stopping ----------------------------------------------------------------------


def test_eos_stops_and_is_not_in_the_text(fitted):
    model, tokenizer = fitted
    result = generate_detailed(model, tokenizer, [FRANCE], max_new_tokens=30)[0]
    assert (result.text, result.stop_reason) == (" Paris.\n", "eos")
    assert tokenizer.eos_token_id not in result.token_ids


def test_stop_strings_cut_the_text_before_the_first_occurrence(fitted):
    model, tokenizer = fitted
    assert generate(model, tokenizer, [HAMLET], max_new_tokens=30) == [FITTED[HAMLET]]
    assert generate(model, tokenizer, [HAMLET], max_new_tokens=30, stop=["\nQ:"]) == [
        " William Shakespeare wrote it."]
    # the earliest occurrence wins, whatever the order of the stop strings
    assert generate(model, tokenizer, [HAMLET], max_new_tokens=30, stop=["it.", "peare"]) == [" William Shakes"]
    result = generate_detailed(model, tokenizer, [HAMLET], max_new_tokens=30, stop=["Shakespeare"])[0]
    assert (result.text, result.stop_reason) == (" William ", "stop")
    assert len(result.token_ids) < len(tokenizer(FITTED[HAMLET], add_special_tokens=False)["input_ids"])


def test_max_new_tokens_is_respected(tiny):
    model, tokenizer = tiny
    for n in (0, 1, 5):
        results = generate_detailed(model, tokenizer, PROMPTS[:5], max_new_tokens=n)
        assert all(len(g.token_ids) == n and g.stop_reason == "length" for g in results)
    assert generate(model, tokenizer, ["x"], max_new_tokens=0) == [""]


def test_stop_token_ids_end_rows_like_eos(tiny):
    model, tokenizer = tiny
    full = generate_detailed(model, tokenizer, [PROMPTS[1]], max_new_tokens=10)[0]
    stop_id = full.token_ids[4]
    first = full.token_ids.index(stop_id)
    cut = generate_detailed(model, tokenizer, [PROMPTS[1]], max_new_tokens=10, stop_token_ids=[stop_id])[0]
    assert cut.token_ids == full.token_ids[:first] and cut.stop_reason == "eos"


def test_end_tokens_include_eos_end_of_turn_and_extras(tiny):
    model, tokenizer = tiny
    ids = end_token_ids(model, tokenizer, extra=[42])
    assert ids == {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(IM_END), 42}


def test_invalid_arguments_name_the_argument(tiny):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="^stop "):
        generate(model, tokenizer, ["x"], max_new_tokens=2, stop="\n")
    with pytest.raises(ValueError, match="^batch_size "):
        generate(model, tokenizer, ["x"], max_new_tokens=2, batch_size=0)
    with pytest.raises(ValueError, match="^max_new_tokens "):
        generate(model, tokenizer, ["x"], max_new_tokens=-1)
    with pytest.raises(ValueError, match=r"^prompts\[1\] "):
        generate(model, tokenizer, ["x", ""], max_new_tokens=2, add_special_tokens=False)
    with pytest.raises(ValueError, match="^prompts "):
        generate(model, tokenizer, "x", max_new_tokens=2)
    with pytest.raises(ValueError, match="^completions "):
        completion_logprobs(model, tokenizer, ["a", "b"], [" c"])


def test_training_mode_is_restored_and_progress_reported(tiny):
    model, tokenizer = tiny
    calls = []
    for mode in (True, False):
        model.train(mode)
        generate(model, tokenizer, PROMPTS, max_new_tokens=2, batch_size=8,
                 progress=lambda done, total: calls.append((done, total)))
        text_logprobs(model, tokenizer, PROMPTS[:3])
        assert model.training is mode
        stream = aligned_logits(model, [[1, 2, 3]] * 3, batch_size=2)
        next(stream)
        assert model.training is mode and torch.is_grad_enabled()  # not leaked while suspended
        list(stream)
    assert calls[:3] == [(8, 21), (16, 21), (21, 21)]
    model.eval()


def test_bf16_autocast_runs(tiny):
    model, tokenizer = tiny
    texts = generate(model, tokenizer, PROMPTS[:4], max_new_tokens=4, autocast=True)
    assert len(texts) == 4 and all(isinstance(t, str) for t in texts)
    lp16 = text_logprobs(model, tokenizer, PROMPTS[:4], autocast=True)
    lp32 = text_logprobs(model, tokenizer, PROMPTS[:4])
    assert all(a.dtype == torch.float32 and torch.allclose(a, b, atol=0.1) for a, b in zip(lp16, lp32))


# --- log-probabilities -------------------------------------------------------------------------


def _direct_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(x_t | x_<t), t = 1..n-1, of one unpadded sequence via log_softmax."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0]  # (T, V)
    return torch.log_softmax(logits[:-1].float(), dim=-1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def test_sequence_logprobs_batched_equal_unbatched_and_direct(tiny):
    model, tokenizer = tiny
    ids = [tokenizer(p)["input_ids"] for p in PROMPTS]
    unbatched = sequence_logprobs(model, ids, batch_size=1)
    for batch_size in (3, 16):
        batched = sequence_logprobs(model, ids, batch_size=batch_size)
        assert all(torch.allclose(a, b, atol=1e-5, rtol=0) for a, b in zip(batched, unbatched))
    for seq, lp in zip(ids, unbatched):
        assert lp.dtype == torch.float32 and lp.shape == (len(seq) - 1,)
        torch.testing.assert_close(lp, _direct_logprobs(model, seq), atol=1e-5, rtol=0)
    assert text_logprobs(model, tokenizer, ["x"])[0].shape == (1,)  # BOS makes "x" scorable
    assert [lp.shape for lp in sequence_logprobs(model, [[5], [5, 6]])] == [(0,), (1,)]


def test_completion_logprobs_score_only_the_completion(tiny):
    model, tokenizer = tiny
    prompts, completions = [FRANCE, HAMLET, "x"], [" Paris.", " William Shakespeare", " y z"]
    scores = completion_logprobs(model, tokenizer, prompts, completions, batch_size=2)
    for prompt, completion, score in zip(prompts, completions, scores):
        p = tokenizer(prompt)["input_ids"]
        c = tokenizer(completion, add_special_tokens=False)["input_ids"]
        expected = _direct_logprobs(model, p + c)[-len(c):]
        assert isinstance(score, CompletionScore) and score.num_tokens == len(c)
        torch.testing.assert_close(score.token_logprobs, expected, atol=1e-5, rtol=0)
        assert score.logprob == pytest.approx(expected.sum().item(), abs=1e-4)
        assert score.mean_logprob == pytest.approx(score.logprob / len(c))


def test_completion_logprobs_rank_the_learned_answer_first(fitted):
    model, tokenizer = fitted
    scores = completion_logprobs(model, tokenizer, [FRANCE] * 3, [" Paris.", " London.", " Rome."])
    assert max(range(3), key=lambda i: scores[i].logprob) == 0


def test_aligned_logits_shapes_masks_and_values(tiny):
    model, tokenizer = tiny
    ids = [seq for seq in (tokenizer(p)["input_ids"] for p in PROMPTS[:7]) if len(seq) > 3][:5]
    assert len(ids) == 5 and len(set(map(len, ids))) > 1  # unequal lengths: padding is tested
    labels = [[-100] * 3 + seq[3:] for seq in ids]  # first targets ignored, as a prompt would be
    batches = list(aligned_logits(model, ids, labels, batch_size=2))
    assert [z.shape[0] for z, _, _ in batches] == [2, 2, 1]  # input order, not sorted
    vocab = model.config.vocab_size
    for k, (z, y, mask) in enumerate(batches):
        rows = ids[2 * k:2 * k + 2]
        width = max(map(len, rows))
        assert z.shape == (len(rows), width - 1, vocab) and z.dtype == torch.float32
        assert y.shape == mask.shape == (len(rows), width - 1) and mask.dtype == torch.bool
        for b, seq in enumerate(rows):
            n = len(seq)
            assert mask[b].tolist() == [False] * 2 + [True] * (n - 3) + [False] * (width - n)
            assert y[b, 2:n - 1].tolist() == seq[3:]
            lp = torch.log_softmax(z[b, :n - 1], dim=-1).gather(-1, torch.tensor(seq[1:])[:, None])[:, 0]
            torch.testing.assert_close(lp, _direct_logprobs(model, seq), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match=r"^labels_list\[0\] "):
        next(aligned_logits(model, ids, [[1]] * 5))
