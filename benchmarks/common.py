"""What every benchmark uses: the evaluation config, per-part means with standard errors, the KL
and MIA helpers, prompt wrapping and the atomic cache writer.

KL(p ‖ q) per token = Σ_v p(v) (log p(v) − log q(v)) (``metrics.kl_per_token``); a KL metric is
named ``[prefix]kl_<a>_<b>_<tokens>`` and reported as the token mean with its standard error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks import inference, metrics
from unlearn.cachedir import atomic_dir, complete  # noqa: F401  (re-exported: the one cache writer)
from unlearn.validate import check, check_int, is_number

PARTS = ("generation", "likelihood", "verbmem", "mia", "kl", "utility")  # a benchmark ignores parts it has not
DEFAULT_SOFTLABEL_GAMMAS = (10.0,)  # UnDIAL's default γ, when a sweep does not search over it


def default_cache() -> Path:
    return Path(os.environ.get("UNLEARN_CACHE", Path.home() / ".cache" / "unlearn-sweeps"))


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
    softlabel_gammas: tuple = ()  # UnDIAL γ values of the soft-label analysis (the sweep's UnDIAL space)

    def __post_init__(self):
        for part in self.parts:
            check(part in PARTS, "eval.parts[]", f"one of {', '.join(PARTS)}", part)
        for name in ("batch_size", "max_new_tokens", "verbatim_tokens", "kl_max_tokens"):
            check_int(f"eval.{name}", getattr(self, name), 1)
        gammas = self.softlabel_gammas
        check(isinstance(gammas, (list, tuple)) and all(is_number(g) and g >= 0 for g in gammas),
              "eval.softlabel_gammas", "numbers >= 0", gammas)
        object.__setattr__(self, "softlabel_gammas", tuple(float(g) for g in self.softlabel_gammas))


@dataclass
class Baseline:
    """References of a benchmark without a retrained model: the target's own scores, nothing
    oracle-relative."""

    baseline: dict = field(default_factory=dict)


def first(items: list, limit: int | None) -> list:
    """The first ``limit`` items (all of them when ``limit`` is None)."""
    return items if limit is None else items[:limit]


PROBES = "_probes"  # suffix of a metric's per-probe scores in an evaluation's output


def put(out: dict, name: str, values, *, per_probe: bool = True) -> None:
    """``out[name]`` = the mean of ``values``, ``out[name_stderr]`` its standard error and, unless
    the values are per token rather than per probe, ``out[name_probes]`` the values themselves
    (scores only, in the benchmark's fixed probe order: what the report's bootstrap resamples)."""
    out[name], out[f"{name}_stderr"] = metrics.mean_and_stderr(values)
    if per_probe:
        out[f"{name}{PROBES}"] = [round(float(v), 6) for v in values]


def without_probes(values: dict) -> dict:
    """An evaluation's output without the per-probe scores (what a scheduler or a console shows)."""
    return {k: v for k, v in values.items() if not k.endswith(PROBES)}


def prompt_text(question: str, chat: bool) -> str:
    """How a question is wrapped, for training and evaluation alike (chat: the tokenizer's chat
    template is applied later by the collator, so the question stays bare)."""
    return question if chat else f"Question: {question}\nAnswer:"


def qa_example(question: str, answer: str, chat: bool) -> dict:
    return {"question": prompt_text(question, chat), "answer": answer if chat else f" {answer}"}


# ------------------------------------------------------------------------------------------- MIA


def min_k_auc(model, tokenizer, forget: list[str], holdout: list[str], config: EvalConfig) -> tuple[float, float]:
    """MUSE's PrivLeak AUC = P(a holdout text looks more member-like than a forget text) under the
    Min-K% statistic (k = ``config.mia_k``), and its standard error."""
    def stat(texts):  # mean of the lowest k of the log-probs: higher = more member-like
        lps = inference.text_logprobs(model, tokenizer, texts, batch_size=config.batch_size, autocast=config.autocast)
        return [-metrics.min_k_score(lp, config.mia_k) for lp in lps]

    members, others = stat(holdout), stat(forget)
    value = metrics.auc(members, others)
    return value, metrics.auc_stderr(value, len(members), len(others))


# -------------------------------------------------------------------------------------------- KL


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


def token_logprobs(model, ids, labels, config: EvalConfig, build=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs ``(N, V)`` at the labelled positions, in order, and their targets ``(N,)``;
    ``build(z, y)`` maps the aligned logits to other log-probs first (a soft label)."""
    rows, targets = [], []
    for z, y, mask in inference.aligned_logits(model, ids, labels, batch_size=config.batch_size,
                                               autocast=config.autocast):
        log_p = build(z, y) if build else torch.log_softmax(z, dim=-1)  # (B, T-1, V)
        rows.append(log_p[mask])
        targets.append(y[mask])
    return torch.cat(rows), torch.cat(targets)


def facts_mask(oracle_logprobs: torch.Tensor, targets: torch.Tensor, threshold: float) -> torch.Tensor:
    """``(N,)`` bool: the tokens the oracle does not predict (p_oracle(y) < threshold)."""
    return oracle_logprobs.gather(-1, targets[:, None]).squeeze(-1).exp() < threshold


def kl_metrics(prefix: str, a: str, b: str, log_a, log_b, tokens: str, subset=None) -> dict:
    """``{prefix}kl_a_b_tokens`` and the reverse, both with standard errors; with ``subset`` (a bool
    mask with at least one token) also ``…_tokens_facts`` over those tokens."""
    out: dict = {}
    for x, y, lx, ly in ((a, b, log_a, log_b), (b, a, log_b, log_a)):
        per = metrics.kl_per_token(lx, ly)  # (N,)
        put(out, f"{prefix}kl_{x}_{y}_{tokens}", per.tolist(), per_probe=False)
        if subset is not None and bool(subset.any()):  # no token the oracle fails to predict: no value
            put(out, f"{prefix}kl_{x}_{y}_{tokens}_facts", per[subset].tolist(), per_probe=False)
    return out
