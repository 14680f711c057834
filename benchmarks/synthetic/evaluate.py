"""Evaluation of a model on the synthetic benchmark, against references computed once.

Metrics (declared in ``benchmarks.synthetic``; every value comes with ``<name>_stderr``):
- ROUGE-L recall of greedy answers per probe group (RWKU convention), forget "all" = mean of
  FB / QA / AA; ROUGE-L F1 of verbatim continuations (MUSE convention);
- ``<group>_answer_prob`` per QA probe group: exp(mean token log-prob) of the reference answer
  given the question, teacher-forced and wrapped as the training QA pairs (a continuous score that
  moves before the greedy answer changes);
- ``utility_mc_accuracy`` / ``utility_mc_prob`` on the general-knowledge multiple-choice set: the
  option with the highest summed token log-prob, log p(option | question), is the model's answer;
  the probability of the right option is the softmax of the four options' scores;
- MIA: Min-K% (k = 0.4) statistic, AUC = P(holdout looks more member-like than forget) (MUSE's
  PrivLeak protocol), ``privleak = (AUC − AUC_oracle) / AUC_oracle × 100``;
- ``kl_X_Y_T`` = token mean of KL(p_X ‖ p_Y) over token set T: ``forget`` (all forget tokens),
  ``forget_facts`` (those the oracle does not predict, p_oracle(y) < 0.05), ``retain``;
- ``softlabel_kl_*``: the same KL between the oracle and Unilogit's soft label built from the
  evaluated model, and UnDIAL's built from the initial model for each γ of
  ``config.softlabel_gammas`` (constant during training, so computed once with the references).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from benchmarks import common, inference, metrics
from benchmarks.common import EvalConfig, kl_inputs, kl_metrics, put, qa_example, token_logprobs
from benchmarks.synthetic.data import Probe, SyntheticData
from unlearn import losses

GENERATION_GROUPS = ("forget_fb", "forget_qa", "forget_aa", "forget_qa_paraphrase", "retain_qa",
                     "retain_qa_paraphrase", "neighbor_fb", "neighbor_qa", "utility_qa")


@dataclass
class References:
    """What every evaluation of a sweep compares against, computed once."""

    oracle_forget: torch.Tensor  # (N_f, V) oracle log-probs at the forget tokens
    oracle_retain: torch.Tensor  # (N_r, V)
    facts: torch.Tensor  # (N_f,) bool: forget tokens the oracle does not predict
    oracle_auc: float
    softlabel: dict = field(default_factory=dict)  # UnDIAL soft-label KLs (initial model, per γ)
    baseline: dict = field(default_factory=dict)  # the target's own scores before unlearning


@dataclass
class Scores:
    """A model's scores when there is no oracle to compare with (``unlearn eval`` without one)."""

    baseline: dict


def answers(model, tokenizer, collate, probes: list[Probe], chat: bool, config: EvalConfig) -> list[str]:
    """Greedy answers to probes, wrapped exactly as the training QA pairs were."""
    prompts = [collate.prompt_ids(common.prompt_text(p.question, chat)) for p in probes]
    return inference.generate(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens,
                              stop=("\n", "Question:"), batch_size=config.batch_size, autocast=config.autocast)


def qa_recall(model, tokenizer, collate, probes: list[Probe], chat: bool, config: EvalConfig) -> list[float]:
    outputs = answers(model, tokenizer, collate, probes, chat, config)
    return [metrics.rouge_l(o, p.answer, "rwku")["recall"] for o, p in zip(outputs, probes)]


FORGET_LEVELS = ("forget_fb", "forget_qa", "forget_aa")
# Probe groups whose reference answers are scored teacher-forced (``<group>_answer_prob``).
ANSWER_PROB_GROUPS = ("forget_qa", "forget_qa_paraphrase", "retain_qa", "retain_qa_paraphrase", "neighbor_qa")
# Multiple choice by the summed token log-prob of each option, not the per-token mean: see
# ``docs/benchmarks/synthetic.md`` (Utility).
MC_LENGTH_NORMALISED = False


def completion_logprobs(model, tokenizer, collate, pairs: list[tuple[str, str]], chat: bool,
                        config: EvalConfig) -> list[torch.Tensor]:
    """Per (question, answer) pair, the answer's per-token log-probs given the question, teacher-forced
    and wrapped exactly as a training QA pair (the collator's prompt ids, then the answer's ids with its
    leading space in plain prompts); the EOS that training appends after the answer is not scored."""
    examples = [qa_example(q, a, chat) for q, a in pairs]
    scores = inference.completion_logprobs(model, tokenizer, [collate.prompt_ids(e["question"]) for e in examples],
                                           [e["answer"] for e in examples], batch_size=config.batch_size,
                                           autocast=config.autocast)
    return [s.token_logprobs for s in scores]


def answer_probs(model, tokenizer, collate, probes: list[Probe], chat: bool, config: EvalConfig) -> list[float]:
    """Per probe, exp(mean token log-prob) of its reference answer (``metrics.answer_probability``)."""
    logprobs = completion_logprobs(model, tokenizer, collate, [(p.question, p.answer) for p in probes], chat, config)
    return [metrics.answer_probability(lp) for lp in logprobs]


def mc_outcomes(model, tokenizer, collate, items: list[dict], chat: bool, config: EvalConfig,
                length_normalised: bool = MC_LENGTH_NORMALISED) -> list[tuple[float, float]]:
    """Per multiple-choice item ``{"question", "choices", "answer"}``, (correct, probability of the right
    choice) from every choice scored as an answer to the question, all choices of all items in one
    batched pass (``metrics.multiple_choice``)."""
    pairs = [(item["question"], choice) for item in items for choice in item["choices"]]
    flat = completion_logprobs(model, tokenizer, collate, pairs, chat, config)
    out, start = [], 0
    for item in items:
        n = len(item["choices"])
        out.append(metrics.multiple_choice(flat[start:start + n], item["answer"], length_normalised=length_normalised))
        start += n
    return out


def _split(scores: list[float], groups: dict) -> list[list[float]]:
    """``scores`` of the probes of ``GENERATION_GROUPS`` in order, cut back into one list per group."""
    out, start = [], 0
    for g in GENERATION_GROUPS:
        out.append(scores[start:start + len(groups[g])])
        start += len(groups[g])
    return out


def _generation(model, tokenizer, collate, data: SyntheticData, config: EvalConfig) -> dict:
    groups = {g: common.first(data.probes[g], config.max_probes) for g in GENERATION_GROUPS}
    flat = [p for g in GENERATION_GROUPS for p in groups[g]]
    scores = qa_recall(model, tokenizer, collate, flat, data.chat, config)
    out = {}
    for g, values in zip(GENERATION_GROUPS, _split(scores, groups)):
        put(out, f"{g}_rouge_l_recall", values)
    pooled = [s for g, values in zip(GENERATION_GROUPS, _split(scores, groups)) if g in FORGET_LEVELS for s in values]
    put(out, "forget_all_rouge_l_recall", pooled)  # pooled over the probes, as RWKU's All
    return out


def _answer_probs(model, tokenizer, collate, data: SyntheticData, config: EvalConfig) -> dict:
    groups = {g: common.first(data.probes[g], config.max_probes) for g in ANSWER_PROB_GROUPS}
    values = answer_probs(model, tokenizer, collate, [p for g in ANSWER_PROB_GROUPS for p in groups[g]], data.chat,
                          config)
    out, start = {}, 0
    for g in ANSWER_PROB_GROUPS:
        put(out, f"{g}_answer_prob", values[start:start + len(groups[g])])
        start += len(groups[g])
    return out


def _utility_mc(model, tokenizer, collate, data: SyntheticData, config: EvalConfig) -> dict:
    """The whole multiple-choice set, whatever ``max_probes`` says: one fixed set of short questions
    (340 short sequences; 13–16 s for SmolLM2 on 2 CPU cores, ``perf/results/utility_mc.json``), which
    cut to a handful would move in steps too coarse to show damage."""
    outcomes = mc_outcomes(model, tokenizer, collate, list(data.utility_mc), data.chat, config)
    out: dict = {}
    put(out, "utility_mc_accuracy", [correct for correct, _ in outcomes])
    put(out, "utility_mc_prob", [prob for _, prob in outcomes])
    return out


def _verbmem(model, tokenizer, data: SyntheticData, config: EvalConfig) -> dict:
    rows = common.first(data.verbatim, config.max_probes)
    outputs = inference.generate(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens=config.verbatim_tokens,
                                 batch_size=config.batch_size, autocast=config.autocast)
    refs = [tokenizer.decode(tokenizer(r["gt"], add_special_tokens=False)["input_ids"][:config.verbatim_tokens])
            for r in rows]
    out: dict = {}
    put(out, "forget_verbmem_rouge_l_f1", [metrics.rouge_l(o, g, "muse")["f1"] for o, g in zip(outputs, refs)])
    return out


def mia_auc(model, tokenizer, data: SyntheticData, config: EvalConfig) -> tuple[float, float]:
    return common.min_k_auc(model, tokenizer, data.mia["forget"], data.mia["holdout"], config)


def _mia(model, tokenizer, data, refs: References | None, config: EvalConfig) -> dict:
    value, se = mia_auc(model, tokenizer, data, config)
    out = {"mia_min_k_auc": value, "mia_min_k_auc_stderr": se}
    if refs is not None and refs.oracle_auc > 0:
        out.update(privleak=metrics.privleak(value, refs.oracle_auc), privleak_stderr=se / refs.oracle_auc * 100)
    elif refs is not None:  # too few MIA texts: the oracle separated them perfectly
        out.update(privleak=float("nan"), privleak_stderr=float("nan"))
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
    (no oracle) the oracle-relative metrics (KL, PrivLeak) are left out. ``generation``: greedy
    answers scored by ROUGE; ``likelihood``: the reference answers' probabilities, teacher-forced (one
    forward pass per probe, cheap enough for every epoch); ``utility``: the multiple choice."""
    parts = config.parts if parts is None else parts
    out: dict = {}
    if "generation" in parts:
        out.update(_generation(model, tokenizer, collate, data, config))
    if "likelihood" in parts:
        out.update(_answer_probs(model, tokenizer, collate, data, config))
    if "utility" in parts:
        out.update(_utility_mc(model, tokenizer, collate, data, config))
    if "verbmem" in parts:
        out.update(_verbmem(model, tokenizer, data, config))
    if "mia" in parts:
        out.update(_mia(model, tokenizer, data, refs, config))
    if "kl" in parts and refs is not None:
        out.update(_kl(model, collate, data, refs, config))
    return out


def references(target, oracle, tokenizer, collate, data: SyntheticData,
               config: EvalConfig = EvalConfig()) -> References:
    """Oracle distributions, the oracle's MIA AUC, UnDIAL's soft-label KLs and the target's scores."""
    forget = kl_inputs(collate, data.forget_examples(), config.kl_max_tokens)
    retain = kl_inputs(collate, data.retain_eval_examples(), config.kl_max_tokens)
    oracle_forget, y = token_logprobs(oracle, *forget, config)
    oracle_retain, _ = token_logprobs(oracle, *retain, config)
    facts = common.facts_mask(oracle_forget, y, config.facts_threshold)
    oracle_auc, _ = mia_auc(oracle, tokenizer, data, config)
    refs = References(oracle_forget, oracle_retain, facts, oracle_auc)
    for gamma in config.softlabel_gammas:
        label, _ = token_logprobs(target, *forget, config,
                                  build=lambda z, t, g=gamma: losses.lowered_target_logprobs(z, t, g))
        refs.softlabel.update(kl_metrics("softlabel_", "oracle", f"undial_g{gamma:g}", oracle_forget, label,
                                         "forget", facts))
    refs.baseline = evaluate(target, tokenizer, collate, data, refs, config)
    return refs
