"""Integration: a tiny model that learned a few bios, unlearned by every method.

Bounds (mean token NLL, nats; the fitted model is at ≈ 0.2 on both sets): every method raises the
forget NLL by more than 0.5 in five epochs; with the ``nll`` retain term the retain NLL rises by less
than 0.5 and stays below the same method's run without a retain term."""

import pytest
import quick_fit as quick

from unlearn import methods

# SatImp's weight p_y^β1 (1 − p_y)^β2 is small on well-learned tokens, and the "I don't know"
# methods have only the four questions (one step an epoch): they need a larger step here.
LR = {"satimp": 3e-3, "idknll": 3e-3, "idkdpo": 3e-3, "rmu": 1e-2}
# RMU keeps the retain set with its own term, on the steered layer's hidden states (weight 1200).
TERM = {"rmu": "hidden"}
FORGET = [{"text": t} for t in quick.FORGET]
RETAIN = [{"text": t} for t in quick.RETAIN]


@pytest.fixture(scope="module")
def fitted_models():
    """Per kind of forget set, the fitted model: bios only, and bios with the forget questions (for
    the "I don't know" methods); each with its collator and retain NLL."""
    out = {}
    for qa in (False, True):
        model, collate = quick.fitted_model(qa=qa)
        before = quick.mean_nll(model, collate, RETAIN)
        assert before < 0.5 and quick.mean_nll(model, collate, FORGET) < 0.5  # the facts were learned
        assert not qa or quick.mean_nll(model, collate, quick.forget_qa()) < 0.5
        out[qa] = model, collate, before
    return out


@pytest.fixture
def fitted(fitted_models, name):
    return fitted_models[methods.get(name).needs_qa_forget]


@pytest.mark.parametrize("name", methods.names())
def test_every_method_lowers_the_forget_likelihood(fitted, name):
    model, collate, _ = fitted
    student = quick.unlearn_copy(model, collate, name, {}, lr=LR.get(name, 1e-3))
    forget = quick.measured(name)
    assert quick.mean_nll(student, collate, forget) > quick.mean_nll(model, collate, forget) + 0.5


@pytest.mark.parametrize("name", [n for n in methods.names() if n not in ("ga", "gd")])
def test_retain_term_keeps_the_retain_set(fitted, name):
    model, collate, retain_before = fitted
    with_term = quick.unlearn_copy(model, collate, name, {"retain": TERM.get(name, "nll")}, lr=LR.get(name, 1e-3))
    without = quick.unlearn_copy(model, collate, name, {"retain": "none"}, lr=LR.get(name, 1e-3))
    retain_with = quick.mean_nll(with_term, collate, RETAIN)
    assert retain_with < retain_before + 0.5
    assert retain_with < quick.mean_nll(without, collate, RETAIN)
    forget = quick.measured(name)
    assert quick.mean_nll(with_term, collate, forget) > quick.mean_nll(model, collate, forget) + 0.5


def test_gd_keeps_retain_better_than_ga(fitted_models):
    model, collate, _ = fitted_models[False]
    ga = quick.unlearn_copy(model, collate, "ga", {})
    gd = quick.unlearn_copy(model, collate, "gd", {})
    assert quick.mean_nll(gd, collate, RETAIN) < quick.mean_nll(ga, collate, RETAIN)
