"""Metrics of MUSE (Shi et al. 2024), RWKU (Jin et al. 2024) and TOFU (Maini et al. 2024): ROUGE-L, MIA
scores, AUC, PrivLeak, KL, truth ratio, forget quality, model utility, extraction strength.

ROUGE-L F = 2PR/(P+R) with P = LCS/|pred|, R = LCS/|ref|; Min-K% = -mean(lowest ⌊k·n⌋ log p);
Min-K%++ z_t = (log p(x_t) - μ_t)/σ_t; PrivLeak = (AUC - AUC_retrain)/AUC_retrain × 100;
KL(p‖q) = Σ_v p(v)(log p(v) - log q(v)), averaged over token positions.
Answer probability = exp(mean token log p); multiple choice: the option with the highest score
(summed or mean token log p) is the answer, p(right) = softmax of the option scores at the right one.

Every function is pure: strings, numbers, sequences or tensors in; Python floats / dicts out
(`token_logprob_moments` returns tensors because its output feeds `min_k_plus_plus_score`).
Tensor inputs are already aligned: position t of the log-probs / logits scores token t, no causal
shift happens here.

Sign convention of the membership-inference scores (`loss_score`, `zlib_score`, `min_k_score`,
`min_k_plus_plus_score`): **higher = less likely under the model = more non-member-like**. The
official RWKU code reports the opposite sign (log-likelihoods, higher = member); negate ours to
compare with its printed means. With our sign, `auc(forget_scores, holdout_scores)` is exactly MUSE's
PrivLeak AUC (P(a holdout text looks more member-like than a forget text); ≈ 0 for a model that
memorised the forget set, so PrivLeak ≈ -100 for the target model).
"""

from __future__ import annotations

import math
import numbers
import re
import zlib
from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[float]]

CONVENTIONS = ("muse", "rwku", "tofu")
ZLIB_REDUCTIONS = ("mean", "sum")


# --------------------------------------------------------------------------------------------
# ROUGE-L
# --------------------------------------------------------------------------------------------

_MUSE_TOKEN_RE = re.compile(r"[a-z0-9]+")


def _check_str(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__}")
    return value


def _zero_rouge() -> dict[str, float]:
    return {"recall": 0.0, "precision": 0.0, "f1": 0.0}


def _muse_tokens(text: str) -> list[str]:
    """Google rouge_score's default tokenizer without stemming: lowercase, keep [a-z0-9] runs.

    Lowercasing happens first (Python's unicode `str.lower`), so "É" becomes "é" and then acts as
    a separator; only ASCII letters and digits ever form tokens.
    """
    return _MUSE_TOKEN_RE.findall(text.lower())


def _lcs_table(ref: Sequence[str], hyp: Sequence[str]) -> list[list[int]]:
    """(len(ref)+1) × (len(hyp)+1) table; cell [i][j] = LCS length of ref[:i] and hyp[:j]."""
    table = [[0] * (len(hyp) + 1) for _ in range(len(ref) + 1)]
    for i in range(1, len(ref) + 1):
        row, prev = table[i], table[i - 1]
        for j in range(1, len(hyp) + 1):
            if ref[i - 1] == hyp[j - 1]:
                row[j] = prev[j - 1] + 1
            else:
                row[j] = max(prev[j], row[j - 1])
    return table


def _stemmed(tokens: list[str]) -> list[str]:
    """rouge_score's stemming: nltk's Porter stemmer (its default mode) on tokens of more than 3 characters."""
    from nltk.stem import porter

    stemmer = porter.PorterStemmer()
    return [stemmer.stem(t) if len(t) > 3 else t for t in tokens]


def _rouge_l_muse(prediction: str, reference: str, stem: bool = False) -> dict[str, float]:
    """rouge_score's RougeScorer(["rougeL"], use_stemmer=stem).score(reference, prediction)."""
    pred, ref = _muse_tokens(prediction), _muse_tokens(reference)
    if stem:
        pred, ref = _stemmed(pred), _stemmed(ref)
    if not pred or not ref:
        return _zero_rouge()
    lcs = _lcs_table(ref, pred)[-1][-1]
    precision = lcs / len(pred)
    recall = lcs / len(ref)
    # Same expression and evaluation order as rouge_score.scoring.fmeasure, so floats match bit for bit.
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {"recall": recall, "precision": precision, "f1": f1}


def _rwku_sentences(text: str) -> list[list[str]]:
    """Sentences as the `rouge` 1.0.1 package sees them: split on ".", drop empty pieces,
    collapse whitespace, split on " ".

    Case is kept and only ASCII "." separates sentences, so "Bachman." and "Bachman" differ only by
    the sentence split while "Bachman," stays one token with its comma; hyphenated words stay whole.
    Quirk reproduced on purpose: a piece made only of whitespace (as in "a. . b") survives the
    filter and becomes one empty-string token "".
    """
    pieces = [piece for piece in text.split(".") if len(piece) > 0]
    return [" ".join(piece.split()).split(" ") for piece in pieces]


def _lcs_word_set(ref: Sequence[str], hyp: Sequence[str]) -> set[str]:
    """Words of the one LCS that `rouge` 1.0.1 reads back (its tie-break, iteratively).

    Walking back from the last cell: on a match take the diagonal; otherwise move up (drop a
    reference word) only when that keeps a strictly longer LCS, else move left. The tie-break
    matters because only the *set of words* of this particular LCS is kept.
    """
    table = _lcs_table(ref, hyp)
    words: set[str] = set()
    i, j = len(ref), len(hyp)
    while i > 0 and j > 0:
        if ref[i - 1] == hyp[j - 1]:
            words.add(ref[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def _rouge_l_rwku(prediction: str, reference: str) -> dict[str, float]:
    """`rouge` 1.0.1 Rouge().get_scores(prediction, reference)[0]["rouge-l"] (exclusive=True).

    Its "summary-level" ROUGE-L works on *sets* of words: m and n count the distinct words of the
    reference and prediction, and the hit count is the number of distinct words in the union, over
    every (reference sentence, prediction sentence) pair, of the words of that pair's LCS.
    """
    hyp_sents, ref_sents = _rwku_sentences(prediction), _rwku_sentences(reference)
    hyp_words = {w for sent in hyp_sents for w in sent}
    ref_words = {w for sent in ref_sents for w in sent}
    # Departure: the library raises on a prediction with no sentence (""), and scores a
    # whitespace-only one against the "" token; we score anything without a real word as 0, and
    # do the same for the reference (the library raises on "" there too).
    if not hyp_words - {""} or not ref_words - {""}:
        return _zero_rouge()
    union: set[str] = set()
    for ref_sent in ref_sents:
        for hyp_sent in hyp_sents:
            union |= _lcs_word_set(ref_sent, hyp_sent)
    recall = len(union) / len(ref_words)
    precision = len(union) / len(hyp_words)
    # The library's F with its 1e-8 in the denominator, same evaluation order.
    f1 = 2.0 * ((precision * recall) / (precision + recall + 1e-8))
    return {"recall": recall, "precision": precision, "f1": f1}


def rouge_l(prediction: str, reference: str, convention: str) -> dict[str, float]:
    """ROUGE-L recall / precision / F1 of `prediction` against `reference`, in [0, 1].

    convention="muse": Google's rouge_score rougeL, no stemmer (MUSE reports F1).
    convention="rwku": the `rouge` 1.0.1 package's case-sensitive summary-level ROUGE-L (RWKU
    reports recall). convention="tofu": rouge_score rougeL with its Porter stemmer (TOFU and
    open-unlearning report recall). A prediction or reference that tokenises to nothing scores 0
    for all three.
    """
    _check_str(prediction, "prediction")
    _check_str(reference, "reference")
    if convention == "muse":
        return _rouge_l_muse(prediction, reference)
    if convention == "rwku":
        return _rouge_l_rwku(prediction, reference)
    if convention == "tofu":
        return _rouge_l_muse(prediction, reference, stem=True)
    raise ValueError(f"convention must be one of: {', '.join(CONVENTIONS)} (got {convention!r})")


# --------------------------------------------------------------------------------------------
# Membership-inference scores (higher = less likely = more non-member-like)
# --------------------------------------------------------------------------------------------


def _as_1d(values: ArrayLike, name: str) -> torch.Tensor:
    """A non-empty 1-D float64 CPU tensor without NaN, or ValueError naming `name`."""
    if isinstance(values, torch.Tensor):
        tensor = values.detach().to(device="cpu", dtype=torch.float64)
    else:
        try:
            tensor = torch.as_tensor(np.asarray(values, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be a 1-D sequence of numbers ({exc})") from None
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(tensor.shape)}")
    if torch.isnan(tensor).any():
        raise ValueError(f"{name} must not contain NaN")
    return tensor


def _check_k(k: float) -> float:
    if isinstance(k, bool) or not isinstance(k, numbers.Real) or not 0.0 < k <= 1.0:
        raise ValueError(f"k must be a number in (0, 1], got {k!r}")
    return float(k)


def _lowest_count(n: int, k: float) -> int:
    """⌊k·n⌋, at least 1.

    The product is the same float product as the official `int(len(x) * ratio)` (so 0.29 × 100
    gives 28, as there). Departure: the official code then averages an empty slice (NaN) when
    ⌊k·n⌋ = 0; we keep one token, as MUSE's protocol text says.
    """
    return max(1, int(math.floor(n * k)))


def _mean_of_lowest(values: torch.Tensor, k: float) -> float:
    count = _lowest_count(values.numel(), _check_k(k))
    return float(torch.sort(values).values[:count].mean())


def loss_score(token_logprobs: ArrayLike) -> float:
    """Mean negative log-likelihood of a text: -mean_t log p(x_t). RWKU's "loss" is its negative."""
    return -float(_as_1d(token_logprobs, "token_logprobs").mean())


def zlib_score(token_logprobs: ArrayLike, text: str, reduction: str = "mean") -> float:
    """Zlib-ratio attack (Carlini et al. 2021): NLL / len(zlib.compress(text.encode("utf-8"))).

    reduction="mean" (default) uses the mean NLL per token, which is what RWKU's eval_mia.py (and
    MUSE's PPL/zlib) compute — `ll = -loss` with the Hugging Face mean loss, `ll / zlib_len` — up to
    our sign. reduction="sum" uses the total NLL of the text instead.
    """
    values = _as_1d(token_logprobs, "token_logprobs")
    _check_str(text, "text")
    if reduction == "mean":
        nll = -float(values.mean())
    elif reduction == "sum":
        nll = -float(values.sum())
    else:
        raise ValueError(f"reduction must be one of: {', '.join(ZLIB_REDUCTIONS)} (got {reduction!r})")
    return nll / len(zlib.compress(text.encode("utf-8")))


def min_k_score(token_logprobs: ArrayLike, k: float) -> float:
    """Min-K% Prob (Shi et al. 2024): -mean of the lowest ⌊k·n⌋ (≥ 1) token log-probs.

    MUSE PrivLeak uses k = 0.4. Same sign as MUSE's own "Min-40%" column.
    """
    return -_mean_of_lowest(_as_1d(token_logprobs, "token_logprobs"), k)


def min_k_plus_plus_score(
    token_logprobs: ArrayLike, mu: ArrayLike, sigma: ArrayLike, k: float
) -> float:
    """Min-K%++ (Zhang et al. 2024): -mean of the lowest ⌊k·n⌋ (≥ 1) z_t = (log p(x_t) - μ_t) / σ_t.

    μ_t, σ_t: mean and std of log p(v) for v ~ p(·|x_<t) (see `token_logprob_moments`).
    RWKU reports k = 0.2, with the opposite sign.
    """
    logp = _as_1d(token_logprobs, "token_logprobs")
    mean = _as_1d(mu, "mu")
    std = _as_1d(sigma, "sigma")
    if not logp.shape == mean.shape == std.shape:
        raise ValueError(
            f"token_logprobs, mu and sigma must have the same length, got "
            f"{logp.numel()}, {mean.numel()}, {std.numel()}"
        )
    if (std < 0).any():
        raise ValueError("sigma must be >= 0")
    # Departure: the official code divides by σ as is; a one-hot next-token distribution (σ = 0)
    # gives 0/0 = NaN there. Flooring σ keeps z = 0 for the predicted token, very negative otherwise.
    z = (logp - mean) / std.clamp_min(1e-12)
    return -_mean_of_lowest(z, k)


def token_logprob_moments(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(μ, σ) of log p(v) under p = softmax(logits) at every position, shapes (T,) or (B, T).

    logits: aligned (T, V) or (B, T, V); computed in float32, or float64 when given float64.
    """
    if not isinstance(logits, torch.Tensor) or logits.dim() not in (2, 3):
        raise ValueError("logits must be a torch.Tensor of shape (T, V) or (B, T, V)")
    dtype = torch.float64 if logits.dtype == torch.float64 else torch.float32
    log_probs = torch.log_softmax(logits.to(dtype), dim=-1)  # (…, T, V)
    probs = log_probs.exp()  # (…, T, V)
    # p·log p with 0·(-inf) := 0, for vocabulary entries masked to -inf.
    p_logp = torch.where(probs > 0, probs * log_probs, torch.zeros_like(probs))  # (…, T, V)
    mu = p_logp.sum(dim=-1)  # (…, T)
    # Departure (rounding only): Var = E[(log p - μ)²] instead of the official E[(log p)²] - μ²,
    # which cancels badly in float32 and can go negative.
    centred = torch.where(probs > 0, log_probs - mu.unsqueeze(-1), torch.zeros_like(probs))
    var = (probs * centred.square()).sum(dim=-1)  # (…, T)
    return mu, var.clamp_min(0).sqrt()


# --------------------------------------------------------------------------------------------
# AUC and PrivLeak
# --------------------------------------------------------------------------------------------


def auc_stderr(a: float, n1: int, n2: int) -> float:
    """Standard error of an AUC ``a`` from ``n1`` and ``n2`` scores (Hanley & McNeil 1982)."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n2 - 1) * (q2 - a * a)) / (n1 * n2)
    return math.sqrt(max(var, 0.0))


def auc(member_scores: ArrayLike, nonmember_scores: ArrayLike) -> float:
    """P(member score > non-member score) + ½ P(tie), via midranks (Mann-Whitney U), O(n log n).

    Exact: U is accumulated in integers (twice the midrank sum), so the result equals a brute-force
    pairwise count. Equals sklearn's ROC AUC with members labelled 1 and the score as is.
    """
    members = _as_1d(member_scores, "member_scores").numpy()
    nonmembers = _as_1d(nonmember_scores, "nonmember_scores").numpy()
    n_members, n_nonmembers = members.size, nonmembers.size
    pooled = np.concatenate([members, nonmembers])
    _, group, counts = np.unique(pooled, return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    # Twice the midrank of each tie group (ranks from 1): 2·(#below) + count + 1, an integer.
    below = np.concatenate([[0], np.cumsum(counts)[:-1]])
    twice_midrank = 2 * below + counts + 1  # (groups,)
    twice_rank_sum = int(twice_midrank[group[:n_members]].sum())
    twice_u = twice_rank_sum - n_members * (n_members + 1)
    return twice_u / (2 * n_members * n_nonmembers)


def privleak(auc_value: float, auc_retrain: float) -> float:
    """MUSE PrivLeak = (AUC - AUC_retrain) / AUC_retrain × 100; 0 is ideal, the target ≈ -100."""
    for name, value in (("auc_value", auc_value), ("auc_retrain", auc_retrain)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    if auc_retrain <= 0:
        raise ValueError(f"auc_retrain must be > 0, got {auc_retrain!r}")
    return float((auc_value - auc_retrain) / auc_retrain * 100)


# --------------------------------------------------------------------------------------------
# KL divergence
# --------------------------------------------------------------------------------------------


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _check_pair(a: object, b: object, names: tuple[str, str]) -> None:
    for name, value in zip(names, (a, b)):
        if not isinstance(value, torch.Tensor) or value.dim() < 1:
            raise ValueError(f"{name} must be a torch.Tensor of shape (..., V)")
    if a.shape != b.shape:  # type: ignore[union-attr]
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got "
                         f"{tuple(a.shape)} and {tuple(b.shape)}")  # type: ignore[union-attr]


def _masked_token_mean(per_token: torch.Tensor, mask: torch.Tensor | None) -> float:
    if mask is None:
        return float(per_token.mean())
    if not isinstance(mask, torch.Tensor) or mask.shape != per_token.shape:
        raise ValueError(f"mask must be a bool tensor of shape {tuple(per_token.shape)}")
    mask = mask.to(device=per_token.device, dtype=torch.bool)
    if not mask.any():
        raise ValueError("mask must select at least one position")
    return float(per_token[mask].mean())


def kl_per_token(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """Σ_v p(v) (log p(v) - log q(v)) over the last dim, with 0·log 0 := 0."""
    p = log_p.exp()  # (..., V)
    terms = torch.where(p > 0, p * (log_p - log_q), torch.zeros_like(p))  # (..., V)
    return terms.sum(dim=-1)  # (...)


def kl(p_logits: torch.Tensor, q_logits: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    """Token-mean KL(p ‖ q) from logits (..., V) over positions where `mask` (shape (...)) is True.

    Computed in float32 after log_softmax, or float64 when either input is float64.
    """
    _check_pair(p_logits, q_logits, ("p_logits", "q_logits"))
    dtype = _compute_dtype(p_logits, q_logits)
    log_p = torch.log_softmax(p_logits.to(dtype), dim=-1)  # (..., V)
    log_q = torch.log_softmax(q_logits.to(device=p_logits.device, dtype=dtype), dim=-1)  # (..., V)
    return _masked_token_mean(kl_per_token(log_p, log_q), mask)


def kl_from_logprobs(
    log_p: torch.Tensor, log_q: torch.Tensor, mask: torch.Tensor | None = None
) -> float:
    """Token-mean KL(p ‖ q) from normalised log-probabilities (..., V), e.g. soft labels vs a model.

    Not re-normalised (that is the difference from `kl`); inputs whose logsumexp over the last dim
    is off 0 by more than 1e-2 are rejected as probably being logits.
    """
    _check_pair(log_p, log_q, ("log_p", "log_q"))
    dtype = _compute_dtype(log_p, log_q)
    log_p = log_p.to(dtype)
    log_q = log_q.to(device=log_p.device, dtype=dtype)
    for name, value in (("log_p", log_p), ("log_q", log_q)):
        if (value.logsumexp(dim=-1).abs() > 1e-2).any():
            raise ValueError(f"{name} must hold normalised log-probabilities (use kl() for logits)")
    return _masked_token_mean(kl_per_token(log_p, log_q), mask)


# --------------------------------------------------------------------------------------------
# Answer probabilities and multiple choice
# --------------------------------------------------------------------------------------------


def answer_probability(token_logprobs: ArrayLike) -> float:
    """exp(mean token log-prob) of an answer: the geometric mean of its per-token probabilities,
    in (0, 1], comparable between answers of different lengths."""
    return float(_as_1d(token_logprobs, "token_logprobs").mean().exp())


def choice_probabilities(scores: ArrayLike) -> list[float]:
    """The softmax of per-choice log-scores, p_i = exp(s_i) / Σ_j exp(s_j): each choice's
    probability when the choices are the only possible answers."""
    return torch.softmax(_as_1d(scores, "scores"), dim=0).tolist()


def multiple_choice(choice_logprobs: Sequence[ArrayLike], answer: int, *,
                    length_normalised: bool) -> tuple[float, float]:
    """(correct, p_answer) of one question from each choice's per-token log-probs.

    A choice's score is the sum of its token log-probs (log p(choice | question)) or, with
    ``length_normalised``, their mean; the predicted choice has the highest score (the first on
    ties) and ``correct`` is 1.0 when it is ``answer``, else 0.0; ``p_answer`` is
    ``choice_probabilities(scores)[answer]``.
    """
    if len(choice_logprobs) < 2:
        raise ValueError(f"a question needs at least 2 choices, got {len(choice_logprobs)}")
    if isinstance(answer, bool) or not isinstance(answer, numbers.Integral) or not 0 <= answer < len(choice_logprobs):
        raise ValueError(f"answer must be an index in [0, {len(choice_logprobs)}), got {answer!r}")
    scores = []
    for i, lp in enumerate(choice_logprobs):
        values = _as_1d(lp, f"choice_logprobs[{i}]")
        scores.append(float(values.mean() if length_normalised else values.sum()))
    predicted = max(range(len(scores)), key=scores.__getitem__)
    return float(predicted == answer), choice_probabilities(scores)[answer]


# --------------------------------------------------------------------------------------------
# Aggregation
# --------------------------------------------------------------------------------------------


def mean_and_stderr(values: ArrayLike) -> tuple[float, float]:
    """(mean, standard error) with stderr = sample std (ddof=1) / √n, and 0.0 when n == 1."""
    array = _as_1d(values, "values").numpy()
    mean = float(array.mean())
    if array.size == 1:
        return mean, 0.0
    return mean, float(array.std(ddof=1) / math.sqrt(array.size))


# --------------------------------------------------------------------------------------------
# TOFU (Maini et al. 2024), as open-unlearning computes it
# --------------------------------------------------------------------------------------------


def _as_2d(values, name: str) -> np.ndarray:
    """A non-empty 2-D float64 array without NaN, or ValueError naming `name`."""
    try:
        array = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 2-D array of numbers ({exc})") from None
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 2-D array (N, K), got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} must not contain NaN")
    return array


def _ratios(ratios: ArrayLike) -> np.ndarray:
    array = _as_1d(ratios, "ratios").numpy()
    if (array < 0).any():
        raise ValueError("ratios must be >= 0")
    return array


def truth_ratio(para_avg_nll: ArrayLike, pert_avg_nll) -> list[float]:
    """Per example R = P(perturbed) / P(paraphrased) = exp(−mean_k pert[:, k]) / exp(−para): the
    perturbed answers averaged in loss space. Inputs are per-answer average token NLLs, shapes
    (N,) and (N, K). Computed as exp(para − mean_k pert), the same number without the underflow of
    exp(−NLL) at large NLLs."""
    para = _as_1d(para_avg_nll, "para_avg_nll").numpy()
    pert = _as_2d(pert_avg_nll, "pert_avg_nll")
    if pert.shape[0] != para.size:
        raise ValueError(f"pert_avg_nll must have one row per example ({para.size}), got {pert.shape[0]}")
    return np.exp(para - pert.mean(axis=1)).tolist()


def truth_ratio_forget_scores(ratios: ArrayLike) -> list[float]:
    """Per example min(R, 1/R): 1 when the paraphrased and perturbed answers are equally likely."""
    r = _ratios(ratios)
    with np.errstate(divide="ignore"):
        return np.minimum(r, 1 / r).tolist()


def truth_ratio_forget(ratios: ArrayLike) -> float:
    """TOFU's forget truth ratio: mean of min(R, 1/R) (higher: the forget answers are no more likely
    than the perturbed ones)."""
    return float(np.mean(truth_ratio_forget_scores(ratios)))


def truth_ratio_retain_scores(ratios: ArrayLike) -> list[float]:
    """Per example max(0, 1 − R)."""
    return np.maximum(0.0, 1 - _ratios(ratios)).tolist()


def truth_ratio_retain(ratios: ArrayLike) -> float:
    """TOFU's truth ratio on retained knowledge: mean of max(0, 1 − R) (higher: the right answer is
    preferred to the perturbed ones)."""
    return float(np.mean(truth_ratio_retain_scores(ratios)))


def forget_quality(unlearned_ratios: ArrayLike, retain_model_ratios: ArrayLike) -> float:
    """TOFU's forget quality: the p-value of the two-sample Kolmogorov–Smirnov test
    (``scipy.stats.ks_2samp``, default arguments) between the unlearned model's and the retain
    model's raw truth ratios on the forget set; 1 when the distributions are indistinguishable."""
    from scipy.stats import ks_2samp

    a = _as_1d(unlearned_ratios, "unlearned_ratios").numpy()
    b = _as_1d(retain_model_ratios, "retain_model_ratios").numpy()
    return float(ks_2samp(a, b).pvalue)


def model_utility(values: ArrayLike) -> float:
    """TOFU's model utility: the harmonic mean n / Σ 1/v of the nine retain, real-authors and
    world-facts values (probability, ROUGE-L recall, truth ratio of each); 0 when any value is 0."""
    array = _as_1d(values, "values").numpy()
    if (array < 0).any():
        raise ValueError("values must be >= 0")
    if (array == 0).any():
        return 0.0
    return float(array.size / np.sum(1 / array))


def normalised_answer_probability(answer_prob: float, wrong_probs: ArrayLike) -> float:
    """p / (p + Σ_k p_k): the right answer's (length-normalised) probability among the right one and
    the perturbed ones, TOFU's probability on real authors and world facts."""
    wrong = _as_1d(wrong_probs, "wrong_probs").numpy()
    if isinstance(answer_prob, bool) or not isinstance(answer_prob, numbers.Real) or not answer_prob >= 0:
        raise ValueError(f"answer_prob must be a number >= 0, got {answer_prob!r}")
    if (wrong < 0).any():
        raise ValueError("wrong_probs must be >= 0")
    total = answer_prob + float(wrong.sum())
    return float(answer_prob / total) if total > 0 else 0.0


def extraction_strength(predicted: Sequence[int], targets: Sequence[int]) -> float:
    """1 − k/n, with k the shortest prefix of the n answer tokens after which the teacher-forced
    argmax predictions equal every remaining target (Carlini et al.'s extraction strength as
    open-unlearning computes it: when no suffix matches, its loop leaves k = n − 1, so 1/n; 0 for
    an empty answer)."""
    predicted, targets = [int(t) for t in predicted], [int(t) for t in targets]
    if len(predicted) != len(targets):
        raise ValueError(f"predicted and targets must have the same length, got {len(predicted)} and {len(targets)}")
    n = len(targets)
    if n == 0:
        return 0.0
    k = next((k for k in range(n) if predicted[k:] == targets[k:]), n - 1)
    return 1 - k / n
