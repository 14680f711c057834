"""Integration: a tiny model that learned a few bios, unlearned by every method.

Bounds (mean token NLL, nats; the fitted model is at ≈ 0.2 on both sets): every method raises the
forget NLL by more than 0.5 in five epochs; with the ``nll`` retain term the retain NLL rises by less
than 0.5 and stays below the same method's run without a retain term."""

import pytest
import quick_fit as quick

from unlearn import methods

FORGET = [{"text": t} for t in quick.FORGET]
RETAIN = [{"text": t} for t in quick.RETAIN]


@pytest.fixture(scope="module")
def fitted():
    model, collate = quick.fitted_model()
    before = quick.mean_nll(model, collate, FORGET), quick.mean_nll(model, collate, RETAIN)
    assert before[0] < 0.5 and before[1] < 0.5  # the facts were learned
    return model, collate, before


@pytest.mark.parametrize("name", methods.names())
def test_every_method_lowers_the_forget_likelihood(fitted, name):
    model, collate, (forget_before, _) = fitted
    student = quick.unlearn_copy(model, collate, name, {})
    assert quick.mean_nll(student, collate, FORGET) > forget_before + 0.5


@pytest.mark.parametrize("name", [n for n in methods.names() if n not in ("ga", "gd")])
def test_retain_term_keeps_the_retain_set(fitted, name):
    model, collate, (forget_before, retain_before) = fitted
    with_term = quick.unlearn_copy(model, collate, name, {"retain": "nll"})
    without = quick.unlearn_copy(model, collate, name, {"retain": "none"})
    retain_with = quick.mean_nll(with_term, collate, RETAIN)
    assert retain_with < retain_before + 0.5
    assert retain_with < quick.mean_nll(without, collate, RETAIN)
    assert quick.mean_nll(with_term, collate, FORGET) > forget_before + 0.5


def test_gd_keeps_retain_better_than_ga(fitted):
    model, collate, _ = fitted
    ga = quick.unlearn_copy(model, collate, "ga", {})
    gd = quick.unlearn_copy(model, collate, "gd", {})
    assert quick.mean_nll(gd, collate, RETAIN) < quick.mean_nll(ga, collate, RETAIN)
