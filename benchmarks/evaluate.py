"""Evaluation of a model on the synthetic benchmark, against references computed once.

Metrics (names in ``benchmarks.synthetic``; every value comes with ``<name>_stderr``):
- ROUGE-L recall of greedy answers per probe group (RWKU convention), forget "all" = mean of
  FB / QA / AA; ROUGE-L F1 of verbatim continuations (MUSE convention);
- MIA: Min-K% (k = 0.4) statistic, AUC = P(holdout looks more member-like than forget) (MUSE's
  PrivLeak protocol), ``privleak = (AUC − AUC_oracle) / AUC_oracle × 100``;
- ``kl_X_Y_T`` = token mean of KL(p_X ‖ p_Y) over token set T: ``forget`` (all forget tokens),
  ``forget_facts`` (those the oracle does not predict, p_oracle(y) < 0.05), ``retain``;
- ``softlabel_kl_*``: the same KL between the oracle and Unilogit's soft label built from the
  evaluated model, and UnDIAL's built from the initial model for each γ (constant during training,
  so computed once with the references).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from benchmarks import inference, metrics
from benchmarks.synthetic import Probe, SyntheticData, prompt_text
from unlearn import losses

GENERATION_GROUPS = ("forget_fb", "forget_qa", "forget_aa", "forget_qa_paraphrase", "retain_qa",
                     "retain_qa_paraphrase", "neighbor_fb", "neighbor_qa", "utility_qa")
PARTS = ("generation", "verbmem", "mia", "kl", "utility")  # a benchmark ignores parts it has not


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 16
    max_new_tokens: int = 24
    verbatim_tokens: int = 48
    max_probes: int | None = None  # per group; None = all
    kl_max_tokens: int = 2048
    facts_threshold: float = 0.05
    mia_k: float = 0.4
    autocast: bool = False
    parts: tuple = PARTS

    def __post_init__(self):
        unknown = sorted(set(self.parts) - set(PARTS))
        if unknown:
            raise ValueError(f"eval part {unknown[0]!r} unknown; allowed: {', '.join(PARTS)}")
        for name in ("batch_size", "max_new_tokens", "verbatim_tokens", "kl_max_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"eval.{name} must be an integer >= 1; got {getattr(self, name)!r}")


@dataclass
class References:
    """What every evaluation of a sweep compares against, computed once."""

    oracle_forget: torch.Tensor  # (N_f, V) oracle log-probs at the forget tokens
    oracle_retain: torch.Tensor  # (N_r, V)
    facts: torch.Tensor  # (N_f,) bool: forget tokens the oracle does not predict
    oracle_auc: float
    softlabel: dict = field(default_factory=dict)  # UnDIAL soft-label KLs (initial model, per γ)
    baseline: dict = field(default_factory=dict)  # the target's own scores before unlearning
    npo_ref_nll: torch.Tensor | None = None  # NPO's NLL_ref per forget example, for every NPO trial


@dataclass
class Scores:
    """A model's scores when there is no oracle to compare with (``unlearn eval`` without one)."""

    baseline: dict
    npo_ref_nll: torch.Tensor | None = None


def _subset(probes: list[Probe], limit: int | None) -> list[Probe]:
    return probes if limit is None else probes[:limit]


def answers(model, tokenizer, collate, probes: list[Probe], chat: bool, config: EvalConfig) -> list[str]:
    """Greedy answers to probes, wrapped exactly as the training QA pairs were."""
    prompts = [collate.prompt_ids(prompt_text(p.question, chat)) for p in probes]
    return inference.generate(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens,
                              stop=("\n", "Question:"), batch_size=config.batch_size, autocast=config.autocast)


def qa_recall(model, tokenizer, collate, probes: list[Probe], chat: bool, config: EvalConfig) -> list[float]:
    outputs = answers(model, tokenizer, collate, probes, chat, config)
    return [metrics.rouge_l(o, p.answer, "rwku")["recall"] for o, p in zip(outputs, probes)]


def _put(out: dict, name: str, values) -> None:
    out[name], out[f"{name}_stderr"] = metrics.mean_and_stderr(values)


def _generation(model, tokenizer, collate, data: SyntheticData, config: EvalConfig) -> dict:
    groups = {g: _subset(data.probes[g], config.max_probes) for g in GENERATION_GROUPS}
    flat = [p for g in GENERATION_GROUPS for p in groups[g]]
    scores = qa_recall(model, tokenizer, collate, flat, data.chat, config)
    out, start = {}, 0
    for g in GENERATION_GROUPS:
        _put(out, f"{g}_rouge_l_recall", scores[start:start + len(groups[g])])
        start += len(groups[g])
    parts = [f"forget_{g}_rouge_l_recall" for g in ("fb", "qa", "aa")]
    out["forget_all_rouge_l_recall"] = sum(out[p] for p in parts) / 3
    out["forget_all_rouge_l_recall_stderr"] = math.sqrt(sum(out[f"{p}_stderr"] ** 2 for p in parts)) / 3
    return out


def _verbmem(model, tokenizer, data: SyntheticData, config: EvalConfig) -> dict:
    rows = data.verbatim if config.max_probes is None else data.verbatim[:config.max_probes]
    outputs = inference.generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=config.verbatim_tokens,
                                 batch_size=config.batch_size, autocast=config.autocast)
    refs = [tokenizer.decode(tokenizer(r["gt"], add_special_tokens=False)["input_ids"][:config.verbatim_tokens])
            for r in rows]
    out: dict = {}
    _put(out, "forget_verbmem_rouge_l_f1", [metrics.rouge_l(o, g, "muse")["f1"] for o, g in zip(outputs, refs)])
    return out


def mia_auc(model, tokenizer, data: SyntheticData, config: EvalConfig) -> tuple[float, float]:
    """MUSE PrivLeak AUC and its standard error (Hanley & McNeil 1982)."""
    def stat(texts):  # mean of the lowest k of the log-probs: higher = more member-like
        lps = inference.text_logprobs(model, tokenizer, texts, batch_size=config.batch_size, autocast=config.autocast)
        return [-metrics.min_k_score(lp, config.mia_k) for lp in lps]

    holdout, forget = stat(data.mia["holdout"]), stat(data.mia["forget"])
    value = metrics.auc(holdout, forget)
    return value, _auc_stderr(value, len(holdout), len(forget))


def _auc_stderr(a: float, n1: int, n2: int) -> float:
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    return math.sqrt(max(var, 0.0))


def _mia(model, tokenizer, data, refs: References | None, config: EvalConfig) -> dict:
    value, se = mia_auc(model, tokenizer, data, config)
    out = {"mia_min_k_auc": value, "mia_min_k_auc_stderr": se}
    if refs is not None and refs.oracle_auc > 0:
        out.update(privleak=metrics.privleak(value, refs.oracle_auc), privleak_stderr=se / refs.oracle_auc * 100)
    elif refs is not None:  # too few MIA texts: the oracle separated them perfectly
        out.update(privleak=float("nan"), privleak_stderr=float("nan"))
    return out


def kl_inputs(collate, examples: list[dict], max_tokens: int) -> tuple[list[list[int]], list[list[int]]]:
    """(ids, labels) of the examples, taken in order until ``max_tokens`` labelled tokens."""
    ids, labels, total = [], [], 0
    for i, example in enumerate(examples):
        x, y = collate.encode(example, i)
        ids.append(x)
        labels.append(y)
        total += sum(1 for t in y[1:] if t != -100)
        if total >= max_tokens:
            break
    return ids, labels


def token_logprobs(model, ids, labels, config: EvalConfig, build=None):
    """Log-probs ``(N, V)`` at the labelled positions, in order; ``build(z, y)`` maps the aligned
    logits to other log-probs first (a soft label)."""
    rows, targets = [], []
    for z, y, mask in inference.aligned_logits(model, ids, labels, batch_size=config.batch_size,
                                               autocast=config.autocast):
        log_p = build(z, y) if build else torch.log_softmax(z, dim=-1)  # (B, T-1, V)
        rows.append(log_p[mask])
        targets.append(y[mask])
    return torch.cat(rows), torch.cat(targets)


def _kl_rows(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(-1)  # (N,)


def kl_metrics(prefix: str, a: str, b: str, log_a, log_b, tokens: str, subset=None) -> dict:
    """``{prefix}kl_a_b_tokens`` and the reverse, both with standard errors."""
    out: dict = {}
    for x, y, lx, ly in ((a, b, log_a, log_b), (b, a, log_b, log_a)):
        per = _kl_rows(lx, ly)
        _put(out, f"{prefix}kl_{x}_{y}_{tokens}", per.tolist())
        if subset is not None and bool(subset.any()):  # no token the oracle fails to predict: no value
            _put(out, f"{prefix}kl_{x}_{y}_{tokens}_facts", per[subset].tolist())
    return out


def _kl(model, collate, data: SyntheticData, refs: References, config: EvalConfig) -> dict:
    forget = kl_inputs(collate, data.forget_examples(), config.kl_max_tokens)
    retain = kl_inputs(collate, data.retain_eval_examples(), config.kl_max_tokens)
    model_forget, _ = token_logprobs(model, *forget, config)
    model_retain, _ = token_logprobs(model, *retain, config)
    label, _ = token_logprobs(model, *forget, config, build=losses.uniform_target_logprobs)
    out = kl_metrics("", "oracle", "model", refs.oracle_forget, model_forget, "forget", refs.facts)
    out.update(kl_metrics("", "oracle", "model", refs.oracle_retain, model_retain, "retain"))
    out.update(kl_metrics("softlabel_", "oracle", "unilogit", refs.oracle_forget, label, "forget", refs.facts))
    out.update(refs.softlabel)
    return out


def evaluate(model, tokenizer, collate, data: SyntheticData, refs: References | None,
             config: EvalConfig = EvalConfig(), parts: tuple | None = None) -> dict:
    """Flat ``{metric: value, metric_stderr: value}`` for the requested parts. Without references
    (no oracle) the oracle-relative metrics (KL, PrivLeak) are left out."""
    parts = config.parts if parts is None else parts
    out: dict = {}
    if "generation" in parts:
        out.update(_generation(model, tokenizer, collate, data, config))
    if "verbmem" in parts:
        out.update(_verbmem(model, tokenizer, data, config))
    if "mia" in parts:
        out.update(_mia(model, tokenizer, data, refs, config))
    if "kl" in parts and refs is not None:
        out.update(_kl(model, collate, data, refs, config))
    return out


def references(target, oracle, tokenizer, collate, data: SyntheticData, config: EvalConfig = EvalConfig(),
               gammas=(3.0, 10.0, 30.0)) -> References:
    """Oracle distributions, the oracle's MIA AUC, UnDIAL's soft-label KLs and the target's scores."""
    forget = kl_inputs(collate, data.forget_examples(), config.kl_max_tokens)
    retain = kl_inputs(collate, data.retain_eval_examples(), config.kl_max_tokens)
    oracle_forget, y = token_logprobs(oracle, *forget, config)
    oracle_retain, _ = token_logprobs(oracle, *retain, config)
    facts = oracle_forget.gather(-1, y[:, None]).squeeze(-1).exp() < config.facts_threshold
    oracle_auc, _ = mia_auc(oracle, tokenizer, data, config)
    refs = References(oracle_forget, oracle_retain, facts, oracle_auc)
    for gamma in gammas:
        label, _ = token_logprobs(target, *forget, config,
                                  build=lambda z, t, g=gamma: losses.lowered_target_logprobs(z, t, g))
        refs.softlabel.update(kl_metrics("softlabel_", "oracle", f"undial_g{gamma:g}", oracle_forget, label,
                                         "forget", facts))
    refs.baseline = evaluate(target, tokenizer, collate, data, refs, config)
    return refs
