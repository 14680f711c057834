"""Metrics against the official libraries (rouge 1.0.1, rouge_score) and independent formulas."""

import ast
import math
import random
import statistics
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from rouge import Rouge
from rouge_score import rouge_scorer

from benchmarks import metrics

# ------------------------------------------------------------------------------------------
# ROUGE-L against the libraries
# ------------------------------------------------------------------------------------------

WORDS = [
    "Richard", "richard", "RICHARD", "Bachman", "bachman", "Stephen", "King", "king", "the", "The",
    "of", "a", "A", "novel", "novels", "well-known", "Well-Known", "state-of-the-art", "co-author",
    "author", "Author,", "author.", "(born", "1947)", "1947", "2,000", "3.14", "U.S.", "e.g.",
    "don't", "it's", "café", "Café", "naïve", "Zürich", "über", "Ελλάδα", "東京", "—", "!", "?",
    "Maine", "Portland", "horror", "writer", "writer!", "pseudonym", "Carrie", "\"Carrie\"",
]
OTHER_WORDS = ["zebra", "Quartz", "umbrella", "7", "x-ray", "Ωmega", "lemon", "violet"]
SEPARATORS = [" ", " ", " ", " ", "  ", "\t", "\n", ". ", ".", " . ", ", ", "; ", "-", "\u00a0"]


def _text(rng: random.Random, pool: list[str], n_min: int = 1, n_max: int = 14) -> str:
    words = [rng.choice(pool) for _ in range(rng.randint(n_min, n_max))]
    out = words[0]
    for word in words[1:]:
        out += rng.choice(SEPARATORS) + word
    if rng.random() < 0.3:
        out += rng.choice([".", ". ", "!", "?", " .", ".."])
    return out


def _mutate(rng: random.Random, text: str) -> str:
    words = text.split(" ")
    op = rng.randrange(7)
    if op == 0:
        return text.lower()
    if op == 1:
        return text.upper()
    if op == 2:  # drop some words
        return " ".join(w for w in words if rng.random() < 0.6) or words[0]
    if op == 3:  # insert words
        for _ in range(rng.randint(1, 4)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(WORDS + OTHER_WORDS))
        return " ".join(words)
    if op == 4:  # shuffle
        rng.shuffle(words)
        return " ".join(words)
    if op == 5:  # punctuation and sentence breaks
        return text.replace(" ", rng.choice([". ", ", ", " - ", "."]), rng.randint(1, 3))
    return " ".join(words + words[: rng.randint(1, len(words))])  # repeated words


def _pairs() -> list[tuple[str, str]]:
    rng = random.Random(1234)
    pairs = [
        ("Richard Bachman.", "richard bachman"),
        ("b a", "a b. a"),  # rouge 1.0.1's LCS tie-break decides the word set: r = 1.0, not 0.5
        ("a. . b", "a. . c"),  # a whitespace-only sentence becomes the "" token in both
        ("Stephen King wrote Carrie.", "Stephen King wrote Carrie."),
        ("well-known author", "well known author"),
        ("the the the cat", "the cat the"),
        ("Café naïve", "cafe naive"),
        ("1947", "He was born in 1947."),
        ("zebra lemon", "Richard Bachman"),
    ]
    while len(pairs) < 320:
        kind = rng.randrange(5)
        reference = _text(rng, WORDS)
        if kind == 0:
            prediction = reference
        elif kind == 1:
            prediction = _text(rng, OTHER_WORDS)
        elif kind == 2:
            prediction = _text(rng, WORDS)
        else:
            prediction = _mutate(rng, reference)
        pairs.append((prediction, reference))
    return pairs


PAIRS = _pairs()


def _has_rwku_word(text: str) -> bool:
    return any(piece.split() for piece in text.split("."))


def _close(ours: dict, recall: float, precision: float, f1: float) -> None:
    assert ours["recall"] == pytest.approx(recall, abs=1e-9)
    assert ours["precision"] == pytest.approx(precision, abs=1e-9)
    assert ours["f1"] == pytest.approx(f1, abs=1e-9)


def test_rouge_l_rwku_matches_rouge_package():
    library = Rouge()
    compared = 0
    for prediction, reference in PAIRS:
        ours = metrics.rouge_l(prediction, reference, "rwku")
        if not (_has_rwku_word(prediction) and _has_rwku_word(reference)):
            assert ours == {"recall": 0.0, "precision": 0.0, "f1": 0.0}, (prediction, reference)
            continue
        theirs = library.get_scores(prediction, reference)[0]["rouge-l"]
        _close(ours, theirs["r"], theirs["p"], theirs["f"])
        compared += 1
    assert compared >= 200


def test_rouge_l_muse_matches_rouge_score():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for prediction, reference in PAIRS:
        ours = metrics.rouge_l(prediction, reference, "muse")
        theirs = scorer.score(reference, prediction)["rougeL"]
        _close(ours, theirs.recall, theirs.precision, theirs.fmeasure)
    assert len(PAIRS) >= 200


def test_rouge_l_pairs_are_varied():
    """The generated pairs really exercise what the conventions disagree on."""
    differ = [
        p for p in PAIRS
        if _has_rwku_word(p[0]) and metrics.rouge_l(*p, "rwku") != metrics.rouge_l(*p, "muse")
    ]
    identical = [p for p in PAIRS if p[0] == p[1]]
    disjoint = [p for p in PAIRS if metrics.rouge_l(*p, "muse")["recall"] == 0.0]
    partial = [p for p in PAIRS if 0.0 < metrics.rouge_l(*p, "rwku")["recall"] < 1.0]
    multi_sentence = [p for p in PAIRS if "." in p[0].strip(".") and "." in p[1].strip(".")]
    assert min(map(len, (differ, identical, disjoint, partial, multi_sentence))) >= 10


def test_rouge_l_documented_example():
    rwku = metrics.rouge_l("Richard Bachman.", "richard bachman", "rwku")
    muse = metrics.rouge_l("Richard Bachman.", "richard bachman", "muse")
    assert rwku == {"recall": 0.0, "precision": 0.0, "f1": 0.0}
    assert muse["recall"] == muse["precision"] == muse["f1"] == 1.0


def test_rouge_l_rwku_tie_break_and_hyphens():
    assert metrics.rouge_l("b a", "a b. a", "rwku")["recall"] == 1.0
    hyphen = metrics.rouge_l("well-known author", "well known author", "rwku")
    assert hyphen["recall"] == pytest.approx(1 / 3)
    assert metrics.rouge_l("well-known author", "well known author", "muse")["recall"] == 1.0


EMPTY = ["", "   ", "\n\t", "...", " . ", ".\n."]


@pytest.mark.parametrize(
    "convention, empty",
    [("rwku", e) for e in EMPTY] + [("muse", e) for e in EMPTY + ["!?", "é —"]],
)
def test_rouge_l_empty_prediction_scores_zero(convention, empty):
    """Nothing to score (the rouge package would raise or match its "" token): 0 for all three."""
    zero = {"recall": 0.0, "precision": 0.0, "f1": 0.0}
    assert metrics.rouge_l(empty, "Richard Bachman", convention) == zero
    assert metrics.rouge_l("Richard Bachman", empty, convention) == zero


def test_rouge_l_bad_input():
    with pytest.raises(ValueError, match="muse, rwku"):
        metrics.rouge_l("a", "a", "google")
    with pytest.raises(ValueError, match="prediction"):
        metrics.rouge_l(None, "a", "muse")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# AUC and PrivLeak
# ------------------------------------------------------------------------------------------


def _brute_auc(members, nonmembers) -> float:
    greater = sum(1 for m in members for n in nonmembers if m > n)
    ties = sum(1 for m in members for n in nonmembers if m == n)
    return (greater + 0.5 * ties) / (len(members) * len(nonmembers))


@pytest.mark.parametrize("seed", range(8))
def test_auc_equals_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    n_m, n_n = rng.integers(1, 60, size=2)
    high = int(rng.integers(2, 12))
    members = rng.integers(0, high, size=n_m)
    nonmembers = rng.integers(0, high, size=n_n) + int(rng.integers(-2, 3))
    expected = _brute_auc(members.tolist(), nonmembers.tolist())
    assert metrics.auc(members, nonmembers) == expected
    assert metrics.auc(members.tolist(), torch.tensor(nonmembers)) == expected


def test_auc_extremes():
    assert metrics.auc([3, 4, 5], [0, 1, 2]) == 1.0
    assert metrics.auc([0, 1, 2], [3, 4, 5]) == 0.0
    assert metrics.auc([1.5, 1.5], [1.5, 1.5, 1.5]) == 0.5
    assert metrics.auc([1.0], [0.0]) == 1.0


def test_auc_rejects_empty_and_nan():
    with pytest.raises(ValueError, match="member_scores"):
        metrics.auc([], [1.0])
    with pytest.raises(ValueError, match="nonmember_scores"):
        metrics.auc([1.0], [])
    with pytest.raises(ValueError, match="NaN"):
        metrics.auc([float("nan")], [1.0])


def test_privleak_sign_and_scale():
    assert metrics.privleak(0.0, 0.4772) == pytest.approx(-100.0)
    assert metrics.privleak(0.4772, 0.4772) == 0.0
    assert metrics.privleak(0.9544, 0.4772) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="auc_retrain"):
        metrics.privleak(0.5, 0.0)
    with pytest.raises(ValueError, match="auc_value"):
        metrics.privleak(1.5, 0.5)


def test_memorised_forget_set_gives_privleak_minus_100():
    """MUSE's sign: forget texts the model memorised have low Min-K scores → AUC 0 → -100."""
    forget = [metrics.min_k_score([-0.01, -0.02, -0.05, -0.1], 0.4) for _ in range(5)]
    holdout = [metrics.min_k_score([-2.0, -3.0 - i, -4.0, -1.0], 0.4) for i in range(5)]
    assert metrics.privleak(metrics.auc(forget, holdout), 0.4772) == pytest.approx(-100.0)


# ------------------------------------------------------------------------------------------
# MIA scores
# ------------------------------------------------------------------------------------------

LOGPROBS = [-1.0, -2.0, -3.0, -4.0, -5.0]


def test_min_k_score_by_hand():
    assert metrics.min_k_score(LOGPROBS, 0.4) == 4.5  # ⌊2.0⌋ = 2 lowest: -5, -4
    assert metrics.min_k_score(LOGPROBS, 0.1) == 5.0  # ⌊0.5⌋ = 0 → 1 token
    assert metrics.min_k_score(LOGPROBS, 1.0) == metrics.loss_score(LOGPROBS) == 3.0
    assert metrics.min_k_score(np.array(LOGPROBS[::-1]), 0.4) == 4.5
    assert metrics.min_k_score(torch.tensor(LOGPROBS, dtype=torch.bfloat16), 0.4) == 4.5
    # Same float product as the official int(len * ratio): 100 × 0.29 → 28 tokens, not 29.
    hundred = [-float(i) for i in range(1, 101)]
    assert metrics.min_k_score(hundred, 0.29) == (100 + 73) / 2


@pytest.mark.parametrize("k", [0, -0.1, 1.5, float("nan"), True, "0.2"])
def test_min_k_score_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k must"):
        metrics.min_k_score(LOGPROBS, k)


def test_scores_reject_bad_token_logprobs():
    with pytest.raises(ValueError, match="token_logprobs"):
        metrics.loss_score([])
    with pytest.raises(ValueError, match="token_logprobs"):
        metrics.min_k_score([[-1.0, -2.0]], 0.5)


def test_zlib_score_by_hand():
    length = len(zlib.compress("Stephen King".encode("utf-8")))
    assert metrics.zlib_score([-1.0, -3.0], "Stephen King") == 2.0 / length
    assert metrics.zlib_score([-1.0, -3.0], "Stephen King", reduction="sum") == 4.0 / length
    with pytest.raises(ValueError, match="reduction"):
        metrics.zlib_score([-1.0], "x", reduction="max")


def _direct_moments(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min-K%++ moments as the paper writes them: μ = E_p[log p], σ² = E_p[(log p)²] - μ²."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(shifted) / np.exp(shifted).sum(axis=-1, keepdims=True)
    logp = np.log(p)
    mu = (p * logp).sum(-1)
    return mu, np.sqrt((p * logp**2).sum(-1) - mu**2)


def test_token_logprob_moments_against_direct_computation():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 40, generator=g, dtype=torch.float64) * 3  # (B, T, V)
    mu, sigma = metrics.token_logprob_moments(logits)
    ref_mu, ref_sigma = _direct_moments(logits.numpy())
    assert mu.shape == sigma.shape == (3, 9) and mu.dtype == torch.float64
    np.testing.assert_allclose(mu.numpy(), ref_mu, rtol=1e-10)
    np.testing.assert_allclose(sigma.numpy(), ref_sigma, rtol=1e-10)
    mu32, sigma32 = metrics.token_logprob_moments(logits[0].to(torch.bfloat16))  # (T, V)
    assert mu32.dtype == torch.float32 and mu32.shape == (9,)
    ref_sigma32 = _direct_moments(logits[0].bfloat16().double().numpy())[1]
    np.testing.assert_allclose(sigma32.numpy(), ref_sigma32, rtol=1e-5)


def test_token_logprob_moments_one_hot_and_masked_vocab():
    logits = torch.tensor([[0.0, -float("inf"), -float("inf")], [1.0, 1.0, -float("inf")]])
    mu, sigma = metrics.token_logprob_moments(logits)
    assert torch.isfinite(mu).all() and torch.isfinite(sigma).all()
    assert mu.tolist() == pytest.approx([0.0, -math.log(2)])
    assert sigma.tolist() == pytest.approx([0.0, 0.0], abs=1e-7)
    with pytest.raises(ValueError, match="logits"):
        metrics.token_logprob_moments(torch.zeros(5))


@pytest.mark.parametrize("k", [0.01, 0.2, 0.5, 1.0])
def test_min_k_plus_plus_against_direct_computation(k):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(23, 50, generator=g, dtype=torch.float64) * 2  # (T, V)
    targets = torch.randint(0, 50, (23,), generator=g)
    token_logprobs = torch.log_softmax(logits, -1).gather(-1, targets[:, None])[:, 0]
    mu, sigma = _direct_moments(logits.numpy())
    z = np.sort((token_logprobs.numpy() - mu) / sigma)
    expected = -z[: max(1, int(len(z) * k))].mean()
    got_mu, got_sigma = metrics.token_logprob_moments(logits)
    got = metrics.min_k_plus_plus_score(token_logprobs, got_mu, got_sigma, k)
    assert got == pytest.approx(expected, rel=1e-9)
    from_lists = metrics.min_k_plus_plus_score(token_logprobs.tolist(), mu, sigma.tolist(), k)
    assert from_lists == pytest.approx(expected, rel=1e-12)


def test_min_k_plus_plus_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="same length"):
        metrics.min_k_plus_plus_score([-1.0, -2.0], [-1.0], [1.0, 1.0], 0.2)
    with pytest.raises(ValueError, match="sigma"):
        metrics.min_k_plus_plus_score([-1.0], [-1.0], [-1.0], 0.2)


# ------------------------------------------------------------------------------------------
# KL
# ------------------------------------------------------------------------------------------


def _direct_kl_per_token(p_logits: np.ndarray, q_logits: np.ndarray) -> np.ndarray:
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    p, q = softmax(p_logits), softmax(q_logits)
    return (p * np.log(p / q)).sum(-1)


def _logits(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * 2).to(dtype)


def test_kl_against_direct_formula_and_mask():
    p, q = _logits(2, 5, 30, seed=0), _logits(2, 5, 30, seed=1)  # (B, T, V)
    per_token = _direct_kl_per_token(p.double().numpy(), q.double().numpy())  # (B, T)
    assert metrics.kl(p, q) == pytest.approx(per_token.mean(), rel=1e-5)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 1], mask[1, 3], mask[1, 4] = True, True, True
    assert metrics.kl(p, q, mask) == pytest.approx(per_token[mask.numpy()].mean(), rel=1e-5)
    assert metrics.kl(p, q, mask) != pytest.approx(metrics.kl(p, q), rel=1e-3)
    assert metrics.kl(p[0], q[0]) == pytest.approx(per_token[0].mean(), rel=1e-5)  # (T, V)


def test_kl_zero_for_identical_and_shift_invariant():
    p = _logits(4, 7, 20)
    assert metrics.kl(p, p) == 0.0
    assert metrics.kl(p, p + 3.0) == pytest.approx(0.0, abs=1e-6)


def test_kl_float64_is_kept():
    """p and q differ by 1e-6: KL ≈ 1e-13 is lost in float32 rounding, exact in float64."""
    p = _logits(3, 6, 25, dtype=torch.float64)
    q = p + 1e-6 * _logits(3, 6, 25, seed=5, dtype=torch.float64)
    expected = _direct_kl_per_token(p.numpy(), q.numpy()).mean()
    assert expected > 0
    assert metrics.kl(p, q) == pytest.approx(expected, rel=1e-3)


def test_kl_from_logprobs_matches_kl_and_rejects_logits():
    p, q = _logits(2, 4, 16, seed=2), _logits(2, 4, 16, seed=3)
    log_p, log_q = torch.log_softmax(p, -1), torch.log_softmax(q, -1)
    mask = torch.tensor([[True, False, True, True], [False, False, True, False]])
    expected = metrics.kl(p, q, mask)
    assert metrics.kl_from_logprobs(log_p, log_q, mask) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="log_p"):
        metrics.kl_from_logprobs(p, log_q)


def test_kl_per_token_against_direct_formula_and_zero_probabilities():
    p, q = _logits(3, 7, 12, seed=6, dtype=torch.float64), _logits(3, 7, 12, seed=7, dtype=torch.float64)
    got = metrics.kl_per_token(torch.log_softmax(p, -1), torch.log_softmax(q, -1))
    assert got.shape == (3, 7)
    np.testing.assert_allclose(got.numpy(), _direct_kl_per_token(p.numpy(), q.numpy()), rtol=1e-10)
    # p(v) = 0 contributes 0 (0 · log 0 := 0), even where q(v) = 0 too
    log_p = torch.log(torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64))
    log_q = torch.log(torch.tensor([[0.25, 0.25, 0.5], [0.5, 0.5, 0.0]], dtype=torch.float64))
    assert metrics.kl_per_token(log_p, log_q).tolist() == pytest.approx([math.log(2), math.log(2)])
    assert metrics.kl_per_token(log_p, log_p).tolist() == [0.0, 0.0]


def test_kl_bad_input():
    p = _logits(2, 3, 8)
    with pytest.raises(ValueError, match="same shape"):
        metrics.kl(p, p[:, :2])
    with pytest.raises(ValueError, match="mask"):
        metrics.kl(p, p, torch.ones(3, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask"):
        metrics.kl(p, p, torch.zeros(2, 3, dtype=torch.bool))


# ------------------------------------------------------------------------------------------
# Aggregation and layering
# ------------------------------------------------------------------------------------------


def test_mean_and_stderr_against_statistics():
    values = [0.3, 0.9, 0.1, 0.75, 0.5, 0.5]
    mean, stderr = metrics.mean_and_stderr(values)
    assert mean == pytest.approx(statistics.mean(values), rel=1e-12)
    assert stderr == pytest.approx(statistics.stdev(values) / math.sqrt(len(values)), rel=1e-12)
    assert metrics.mean_and_stderr(np.array(values)) == (mean, stderr)
    assert metrics.mean_and_stderr([0.42]) == (0.42, 0.0)
    with pytest.raises(ValueError, match="values"):
        metrics.mean_and_stderr([])


def test_auc_stderr_is_hanley_mcneil():
    # worked by hand: Q1 = A / (2 - A), Q2 = 2A² / (1 + A), var = (A(1-A) + (n1-1)(Q1-A²) + (n2-1)(Q2-A²)) / (n1 n2)
    q1, q2 = 0.75 / 1.25, 2 * 0.5625 / 1.75
    assert metrics.auc_stderr(0.75, 10, 10) == pytest.approx(
        math.sqrt((0.75 * 0.25 + 9 * (q1 - 0.5625) + 9 * (q2 - 0.5625)) / 100), rel=1e-12)
    assert metrics.auc_stderr(0.5, 1, 1) == pytest.approx(0.5)  # one pair: a coin flip
    assert metrics.auc_stderr(1.0, 5, 7) == 0.0 and metrics.auc_stderr(0.0, 5, 7) == 0.0  # perfect separation
    assert metrics.auc_stderr(0.7, 100, 100) < metrics.auc_stderr(0.7, 10, 10)


def test_auc_stderr_matches_the_spread_of_simulated_aucs():
    rng = np.random.default_rng(0)
    for shift, n1, n2 in ((1.0, 40, 40), (0.5, 30, 60)):
        aucs = [metrics.auc(rng.normal(shift, 1, n1), rng.normal(0, 1, n2)) for _ in range(1500)]
        true_auc = 0.5 * (1 + math.erf(shift / 2))  # P(N(shift, 1) > N(0, 1))
        assert np.mean(aucs) == pytest.approx(true_auc, abs=0.01)
        assert metrics.auc_stderr(true_auc, n1, n2) == pytest.approx(np.std(aucs), rel=0.1)


def test_metrics_module_imports_no_service_layer():
    tree = ast.parse(Path(metrics.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & {"ray", "deepspeed", "sweeps", "reports", "unlearn"}
