"""TOFU's metric functions against scipy, rouge_score and brute force on random inputs (agreement to 1e-9)."""

import itertools
import math
import random

import numpy as np
import pytest
import scipy.stats
from rouge_score import rouge_scorer

from benchmarks import metrics

SEEDS = range(5)


def _nlls(seed: int, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 6.0, n), rng.uniform(0.0, 6.0, (n, k))


@pytest.mark.parametrize("seed", SEEDS)
def test_truth_ratio_is_perturbed_over_paraphrased_probability(seed):
    para, pert = _nlls(seed, 40, 1 + seed)
    ours = metrics.truth_ratio(para, pert)
    for i in range(len(para)):  # loss-space mean of the perturbed answers, then probabilities
        mean = sum(pert[i]) / len(pert[i])
        assert ours[i] == pytest.approx(math.exp(-mean) / math.exp(-para[i]), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_truth_ratio_aggregates_by_brute_force(seed):
    ratios = metrics.truth_ratio(*_nlls(seed, 30, 5))
    forget = sum(min(r, 1 / r) for r in ratios) / len(ratios)
    retain = sum(max(0.0, 1 - r) for r in ratios) / len(ratios)
    assert metrics.truth_ratio_forget(ratios) == pytest.approx(forget, rel=1e-9, abs=1e-12)
    assert metrics.truth_ratio_retain(ratios) == pytest.approx(retain, rel=1e-9, abs=1e-12)
    assert np.mean(metrics.truth_ratio_forget_scores(ratios)) == pytest.approx(forget, rel=1e-12)
    assert np.mean(metrics.truth_ratio_retain_scores(ratios)) == pytest.approx(retain, rel=1e-12)


def test_truth_ratio_extremes_and_errors():
    assert metrics.truth_ratio([1.0], [[1.0, 1.0]]) == [1.0]  # equally likely
    assert metrics.truth_ratio([2000.0], [[2001.0]]) == pytest.approx([math.exp(-1)])  # no underflow
    assert metrics.truth_ratio_forget([0.0, 1.0]) == 0.5 and metrics.truth_ratio_retain([0.0, 2.0]) == 0.5
    for para, pert, message in (([1.0, 2.0], [[1.0]], "one row per example"), ([1.0], [1.0], "2-D"),
                                ([float("nan")], [[1.0]], "NaN"), ([], [[1.0]], "non-empty")):
        with pytest.raises(ValueError, match=message):
            metrics.truth_ratio(para, pert)
    with pytest.raises(ValueError, match=">= 0"):
        metrics.truth_ratio_forget([-1.0])


@pytest.mark.parametrize("seed", SEEDS)
def test_forget_quality_is_scipys_ks_2samp_p_value(seed):
    rng = np.random.default_rng(seed)
    for n, m in ((3, 4), (40, 40), (400, 400), (25, 90)):  # exact and asymptotic regimes
        a, b = rng.lognormal(0, 1, n), rng.lognormal(0.3 * seed, 1, m)
        assert metrics.forget_quality(a, b) == pytest.approx(scipy.stats.ks_2samp(a, b).pvalue, rel=1e-9, abs=1e-300)


def _exact_ks_p_value(a: list, b: list) -> float:
    """P(D ≥ D_observed) over every equally likely split of the pooled values into groups of the two
    sizes (the exact two-sided test, brute force)."""
    def statistic(x, y):
        grid = sorted(x + y)
        return max(abs(sum(v <= t for v in x) / len(x) - sum(v <= t for v in y) / len(y)) for t in grid)

    pooled, observed = a + b, statistic(a, b)
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), len(a)):
        x = [pooled[i] for i in chosen]
        y = [pooled[i] for i in range(len(pooled)) if i not in chosen]
        hits += statistic(x, y) >= observed - 1e-12
        total += 1
    return hits / total


@pytest.mark.parametrize("seed", SEEDS)
def test_forget_quality_equals_the_exact_test_by_enumeration(seed):
    rng = random.Random(seed)
    a = [rng.random() for _ in range(4)]
    b = [rng.random() + 0.2 * seed for _ in range(5)]
    assert metrics.forget_quality(a, b) == pytest.approx(_exact_ks_p_value(a, b), rel=1e-9)


def test_forget_quality_of_identical_ratios_is_one():
    ratios = metrics.truth_ratio(*_nlls(0, 20, 5))
    assert metrics.forget_quality(ratios, ratios) == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_model_utility_is_the_harmonic_mean(seed):
    values = np.random.default_rng(seed).uniform(0.01, 1.0, 9)
    brute = 9 / sum(1 / v for v in values)
    assert metrics.model_utility(values) == pytest.approx(brute, rel=1e-9)
    assert metrics.model_utility(values) == pytest.approx(scipy.stats.hmean(values), rel=1e-9)
    assert metrics.model_utility([*values[:8], 0.0]) == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        metrics.model_utility([0.5, -0.1])


@pytest.mark.parametrize("seed", SEEDS)
def test_normalised_answer_probability_by_brute_force(seed):
    rng = random.Random(seed)
    p, wrong = rng.random(), [rng.random() for _ in range(3)]
    assert metrics.normalised_answer_probability(p, wrong) == pytest.approx(p / (p + sum(wrong)), rel=1e-9)
    assert metrics.normalised_answer_probability(0.0, [0.0]) == 0.0


def _brute_extraction_strength(predicted, targets):
    n = len(targets)
    for k in range(n):
        if all(p == t for p, t in zip(predicted[k:], targets[k:])):
            return 1 - k / n
    return 1 - (n - 1) / n  # open-unlearning's loop ends at k = n − 1


@pytest.mark.parametrize("seed", SEEDS)
def test_extraction_strength_by_brute_force(seed):
    rng = random.Random(seed)
    for _ in range(200):
        n = rng.randint(1, 12)
        targets = [rng.randrange(4) for _ in range(n)]
        predicted = [t if rng.random() < 0.7 else rng.randrange(4) for t in targets]
        assert metrics.extraction_strength(predicted, targets) == pytest.approx(
            _brute_extraction_strength(predicted, targets), abs=1e-12)
    assert metrics.extraction_strength([1, 2, 3], [1, 2, 3]) == 1.0
    assert metrics.extraction_strength([9, 9, 3], [1, 2, 3]) == pytest.approx(1 / 3)
    assert metrics.extraction_strength([9, 9, 9], [1, 2, 3]) == pytest.approx(1 / 3)  # no suffix: 1/n
    assert metrics.extraction_strength([], []) == 0.0
    with pytest.raises(ValueError, match="same length"):
        metrics.extraction_strength([1], [1, 2])


SENTENCES = [
    "Tobiah Wrenfield writes coastal mystery novels set in small fishing towns.",
    "He is writing mysteries, running between the towns and fishing.",
    "The authors' studies were studied by studying students.",
    "Casimir Thornbury lives in Brackenford, a market town known for its stone bridges.",
    "Lives of the bridges: stones, marketing, knowing.",
    "Généalogie des écrivains: Zürich, 1947, naïve.",
    "",
    "a b c",
]


def test_rouge_l_tofu_is_rouge_score_with_the_porter_stemmer():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rng = random.Random(0)
    pairs = [(a, b) for a in SENTENCES for b in SENTENCES]
    words = " ".join(SENTENCES).split()
    pairs += [(" ".join(rng.choices(words, k=rng.randint(1, 12))), " ".join(rng.choices(words, k=rng.randint(1, 12))))
              for _ in range(200)]
    stemmed_differs = 0
    for prediction, reference in pairs:
        ours = metrics.rouge_l(prediction, reference, "tofu")
        theirs = scorer.score(reference, prediction)["rougeL"]
        assert ours["recall"] == pytest.approx(theirs.recall, abs=1e-9)
        assert ours["precision"] == pytest.approx(theirs.precision, abs=1e-9)
        assert ours["f1"] == pytest.approx(theirs.fmeasure, abs=1e-9)
        stemmed_differs += metrics.rouge_l(prediction, reference, "muse")["recall"] != ours["recall"]
    assert stemmed_differs >= 10  # the stemmer matters on these pairs
