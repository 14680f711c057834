"""TOFU (Maini et al. 2024; ``locuslab/TOFU``, MIT) with open-unlearning's evaluator
(``docs/benchmarks/tofu.md``).

``benchmarks.get("tofu", split="forget10", source="locuslab/TOFU", chat=True, max_new_tokens=200)``
→ :class:`Tofu`. ``source`` is the hub dataset or a local directory in the same layout
(``<root>/<config>/train.jsonl`` or ``.parquet``), read through :func:`benchmarks.layouts.rows` (one
schema check); the configs of the chosen ``split`` (``forgetNN``, its ``retain{100-NN}`` and
``holdoutNN``, ``forgetNN_perturbed``) and the shared ones (``retain_perturbed``, ``real_authors``,
``world_facts`` and their ``_perturbed``) are copied once under ``cache/tofu-<key>/`` and read back
offline. The split is a parameter, so ``split: {grid: [forget01, forget05, forget10]}`` is one
sweep dimension (each grid point then needs its own retain model: ``model.base`` prepares them).

Every score is teacher-forced or generated after the question, asked as open-unlearning asks it:
with ``chat`` the tokenizer's chat template with the system prompt "You are a helpful assistant."
and date string "10 Apr 2025" (the published TOFU models were fine-tuned with it); without,
``"Question: {q}\\nAnswer:"`` as the training examples are wrapped. Answers are scored with their
EOS. Metrics (formulas in :mod:`benchmarks.metrics`):

- ``<set>_qa_prob``: exp(−mean token NLL) of the answer; ``real_authors`` / ``world_facts``:
  ``…_qa_prob_normalised`` = p(answer) / (p(answer) + Σ p(perturbed));
- ``<set>_qa_rouge_l_recall``: ROUGE-L recall (rouge_score, Porter stemmer) of the greedy answer,
  ``max_new_tokens`` new tokens, ending at EOS;
- truth ratio R = P(perturbed) / P(paraphrased) per question (the retain model's on the forget set
  is the reference); ``forget_truth_ratio`` = mean min(R, 1/R); ``retain_truth_ratio`` = mean
  max(0, 1 − R), on real authors and world facts with the answer itself in place of a paraphrase;
- ``forget_quality``: KS-test p-value between the model's and the retain model's forget R;
- ``model_utility``: harmonic mean of the nine retain / real-authors / world-facts values;
- ``forget_qa_extraction_strength``: 1 − k/n over the answer tokens (EOS left out);
- ``mia_min_k_auc`` (Min-40% of the answer tokens, forget vs holdout, MUSE's convention: P(a holdout
  answer looks more member-like)) and ``privleak`` = (AUC − AUC_retain) / AUC_retain × 100, which is
  open-unlearning's privleak; AUC_retain is 0.5 without a retain model, as there.

Parts: ``likelihood`` (probabilities, truth ratios, forget quality, extraction strength),
``generation`` (ROUGE), both for ``model_utility``; ``mia``. From the evaluation config only
``batch_size``, ``autocast`` and ``max_probes`` (the first questions of each set) apply.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import common, inference, layouts, metrics
from benchmarks.common import put
from benchmarks.spec import Declaration, Front, Metric, Selection, check_declaration, register
from unlearn.validate import check, check_int, fail

FORMAT_VERSION = 1
DEFAULT_SOURCE = "locuslab/TOFU"
SPLITS = {"forget01": ("retain99", "holdout01"), "forget05": ("retain95", "holdout05"),
          "forget10": ("retain90", "holdout10")}
SHARED = ("retain_perturbed", "real_authors", "real_authors_perturbed", "world_facts", "world_facts_perturbed")
SYSTEM_PROMPT = "You are a helpful assistant."
DATE_STRING = "10 Apr 2025"
MAX_NEW_TOKENS = 200
MIN_K = 0.4
PARAMS = ("split", "source", "chat", "max_new_tokens")
SETS = ("forget", "retain", "real_authors", "world_facts")  # the evaluated question sets
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def configs(split: str) -> dict:
    """role -> hub config name of everything a split needs."""
    retain, holdout = SPLITS[split]
    return {"forget": split, "retain": retain, "holdout": holdout, "forget_perturbed": f"{split}_perturbed",
            **{name: name for name in SHARED}}


def _metrics() -> tuple[Metric, ...]:
    m = [Metric("forget_quality", "max", "forget", "KS-test p-value: forget truth ratios vs the retain model's"),
         Metric("forget_truth_ratio", "max", "forget", "mean min(R, 1/R), R = P(perturbed) / P(paraphrased)"),
         Metric("forget_qa_prob", "min", "forget", "exp(−mean NLL) of the forget answers"),
         Metric("forget_qa_rouge_l_recall", "min", "forget", "ROUGE-L recall of greedy forget answers"),
         Metric("forget_qa_extraction_strength", "min", "forget", "1 − k/n, k the prefix the model needs"),
         Metric("retain_qa_prob", "max", "retain", "exp(−mean NLL) of the retain answers"),
         Metric("retain_qa_rouge_l_recall", "max", "retain", "ROUGE-L recall of greedy retain answers"),
         Metric("retain_truth_ratio", "max", "retain", "mean max(0, 1 − R) on retain questions")]
    for name, what in (("real_authors", "real authors"), ("world_facts", "world facts")):
        m += [Metric(f"{name}_qa_prob_normalised", "max", "utility", f"p(answer) among the {what} options"),
              Metric(f"{name}_qa_rouge_l_recall", "max", "utility", f"ROUGE-L recall of greedy {what} answers"),
              Metric(f"{name}_truth_ratio", "max", "utility", f"mean max(0, 1 − R) on {what}")]
    m += [Metric("model_utility", "max", "utility", "harmonic mean of the nine retain / real authors / world facts"),
          Metric("mia_min_k_auc", 0.5, "privacy", "Min-40% AUC, P(a holdout answer looks more member-like)"),
          Metric("privleak", 0.0, "privacy", "(AUC − AUC_retain) / AUC_retain × 100", scale=100)]
    return tuple(m)


UTILITY = ("retain_qa_prob", "retain_qa_rouge_l_recall", "retain_truth_ratio",
           "real_authors_qa_prob_normalised", "real_authors_qa_rouge_l_recall", "real_authors_truth_ratio",
           "world_facts_qa_prob_normalised", "world_facts_qa_rouge_l_recall", "world_facts_truth_ratio")
# TOFU's figure: forget quality against model utility. The selection rule needs a lower-is-better
# forget metric: forget ROUGE within 0.05 of the retain model's.
DECLARED = Declaration(
    needs_oracle=True, can_prepare=True, forget_qa=True,
    oracle_params=("split", "source"),
    fronts=(Front("forget_quality", "model_utility"),),
    trajectories=("forget_quality", "model_utility", "forget_truth_ratio", "forget_qa_prob",
                  "forget_qa_rouge_l_recall"),
    selection=Selection("forget_qa_rouge_l_recall", "model_utility", oracle_tolerance=0.05, target_fraction=0.5,
                        floors={"model_utility": 0.5}))
check_declaration("tofu", _metrics(), DECLARED)


# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class TofuData:
    root: Path = field(compare=False)
    split: str
    rows: dict  # role (``configs``) -> rows
    chat: bool = True

    def _qa(self, role: str) -> list[dict]:
        return [common.qa_example(r["question"], r["answer"], self.chat) for r in self.rows[role]]

    def forget_examples(self) -> list[dict]:
        return self._qa("forget")

    def retain_examples(self) -> list[dict]:
        return self._qa("retain")

    def train_examples(self, *, with_forget: bool, utility: bool) -> list[dict]:
        """TOFU's fine-tuning set (``full`` = forget ∪ retain) or the retain model's (retain only);
        ``utility`` adds the real-authors and world-facts answers (a model trained from scratch)."""
        extra = self._qa("real_authors") + self._qa("world_facts") if utility else []
        return (self.forget_examples() if with_forget else []) + self.retain_examples() + extra

    def forget_probes(self) -> list[dict]:
        return [{"question": r["question"], "answer": r["answer"]} for r in self.rows["forget"]]

    def check_probes(self, *, with_forget: bool) -> list[dict]:
        retain = [{"question": r["question"], "answer": r["answer"]} for r in self.rows["retain"]]
        return (self.forget_probes() if with_forget else []) + retain

    def corpus_texts(self) -> list[str]:
        keys = ("question", "answer", "paraphrased_question", "paraphrased_answer", "option1", "option2", "option3",
                "option4")
        texts = [r[k] for rows in self.rows.values() for r in rows for k in keys if k in r]
        return texts + [a for rows in self.rows.values() for r in rows for a in r.get("perturbed_answer", [])]


def check_perturbed(rows: list[dict], where: str) -> list[dict]:
    """Every ``perturbed_answer`` a non-empty list of strings, as many in every row (one line otherwise)."""
    sizes = set()
    for number, row in enumerate(rows, 1):
        answers = list(row["perturbed_answer"])
        if not answers or not all(isinstance(a, str) for a in answers):
            raise ValueError(f"{where}: row {number} field 'perturbed_answer' must be a non-empty list of strings")
        row["perturbed_answer"] = answers
        sizes.add(len(answers))
    if len(sizes) > 1:
        raise ValueError(f"{where}: field 'perturbed_answer' must hold as many answers in every row; "
                         f"found {sorted(sizes)}")
    return rows


def load(source, config: str) -> list[dict]:
    """Rows of one config (split ``train``) from a local directory or a hub id, checked."""
    rows = layouts.rows(source, "tofu", config, "train")
    if not rows:
        raise ValueError(f"{source} {config}/train: the split has no rows")
    return check_perturbed(rows, f"{source} {config}/train") if "perturbed_answer" in rows[0] else rows


def read(root: str | Path, split: str, chat: bool = True) -> TofuData:
    """A materialised copy read back (no network)."""
    return TofuData(Path(root), split, {role: load(Path(root), c) for role, c in configs(split).items()}, chat)


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".jsonl", ".parquet") and p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# prompts and scores


def prompt_ids(tokenizer, collate, question: str, chat: bool) -> list[int]:
    """The question as open-unlearning asks it: the chat template with TOFU's system prompt and date
    string, or ``"Question: {q}\\nAnswer:"`` after the tokenizer's prefix."""
    if not chat:
        return collate.prompt_ids(common.prompt_text(question, False))
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False, date_string=DATE_STRING)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_ids(tokenizer, answer: str, chat: bool) -> list[int]:
    """The scored tokens: the answer (with its leading space in plain prompts), then EOS."""
    ids = list(tokenizer(answer if chat else f" {answer}", add_special_tokens=False)["input_ids"])
    return ids + [tokenizer.eos_token_id]


class _Requests:
    """(question, answer) pairs to score in one batched pass, each remembered by its position."""

    def __init__(self, tokenizer, collate, chat: bool):
        self.tokenizer, self.collate, self.chat = tokenizer, collate, chat
        self.prompts, self.answers = [], []

    def add(self, question: str, answer: str) -> int:
        self.prompts.append(prompt_ids(self.tokenizer, self.collate, question, self.chat))
        self.answers.append(answer_ids(self.tokenizer, answer, self.chat))
        return len(self.answers) - 1

    def score(self, model, config) -> list:
        return inference.completion_logprobs(model, self.tokenizer, self.prompts, self.answers, predictions=True,
                                             batch_size=config.batch_size, autocast=config.autocast)


def avg_nll(score) -> float:
    """Mean token NLL of a scored answer (its EOS included), open-unlearning's ``avg_loss``."""
    return -float(score.token_logprobs.mean())


def sets(data: TofuData, limit: int | None) -> dict:
    """The evaluated questions of each set: the perturbed configs (their question and answer are
    what open-unlearning scores), cut to ``limit``."""
    roles = {"forget": "forget_perturbed", "retain": "retain_perturbed", "real_authors": "real_authors_perturbed",
             "world_facts": "world_facts_perturbed"}
    return {name: common.first(data.rows[role], limit) for name, role in roles.items()}


def _likelihood_scores(model, tokenizer, collate, data: TofuData, config) -> dict:
    """Per set and question: the answer's score, its token ids, and the average NLLs of the
    reference (paraphrased answer; the answer itself on real authors and world facts) and of each
    perturbed answer."""
    requests = _Requests(tokenizer, collate, data.chat)
    plan = {}
    for name, rows in sets(data, config.max_probes).items():
        plan[name] = [(requests.add(r["question"], r["answer"]),
                       requests.add(r["question"], r["paraphrased_answer"]) if "paraphrased_answer" in r else None,
                       [requests.add(r["question"], p) for p in r["perturbed_answer"]]) for r in rows]
    scores = requests.score(model, config)
    out = {}
    for name, items in plan.items():
        out[name] = [{"answer": scores[a], "ids": requests.answers[a],
                      "reference": avg_nll(scores[a if p is None else p]),
                      "perturbed": [avg_nll(scores[i]) for i in wrong]} for a, p, wrong in items]
    return out


def ratios_of(items: list[dict]) -> list[float]:
    return metrics.truth_ratio([i["reference"] for i in items], [i["perturbed"] for i in items])


def forget_ratios(model, tokenizer, collate, data: TofuData, config) -> list[float]:
    """The raw truth ratios on the forget set (the retain model's are forget quality's reference)."""
    return ratios_of(_likelihood_scores(model, tokenizer, collate, data, config)["forget"])


def _likelihood(model, tokenizer, collate, data: TofuData, refs, config) -> dict:
    scored = _likelihood_scores(model, tokenizer, collate, data, config)
    out: dict = {}
    forget = scored["forget"]
    ratios = ratios_of(forget)
    put(out, "forget_qa_prob", [metrics.answer_probability(i["answer"].token_logprobs) for i in forget])
    put(out, "forget_truth_ratio", metrics.truth_ratio_forget_scores(ratios))
    put(out, "forget_qa_extraction_strength",
        [metrics.extraction_strength(i["answer"].predicted[:-1].tolist(), i["ids"][:-1]) for i in forget])
    if refs is not None and refs.forget_ratios is not None:
        out["forget_quality"] = metrics.forget_quality(ratios, refs.forget_ratios)
        out["forget_quality_stderr"] = math.nan  # one p-value, no mean over items
    retain = scored["retain"]
    put(out, "retain_qa_prob", [metrics.answer_probability(i["answer"].token_logprobs) for i in retain])
    put(out, "retain_truth_ratio", metrics.truth_ratio_retain_scores(ratios_of(retain)))
    for name in ("real_authors", "world_facts"):
        items = scored[name]
        put(out, f"{name}_qa_prob_normalised",
            [metrics.normalised_answer_probability(math.exp(-i["reference"]), [math.exp(-x) for x in i["perturbed"]])
             for i in items])
        put(out, f"{name}_truth_ratio", metrics.truth_ratio_retain_scores(ratios_of(items)))
    return out


def answers(model, tokenizer, collate, questions: list[str], chat: bool, max_new_tokens: int, config) -> list[str]:
    """Greedy answers, ending at EOS (or the chat's end of turn), stripped."""
    prompts = [prompt_ids(tokenizer, collate, q, chat) for q in questions]
    outputs = inference.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens,
                                 batch_size=config.batch_size, autocast=config.autocast)
    return [o.strip() for o in outputs]


def recall(output: str, answer: str) -> float:
    """ROUGE-L recall of an answer, as open-unlearning scores it (rouge_score, Porter stemmer)."""
    return metrics.rouge_l(output, answer, "tofu")["recall"]


def _generation(model, tokenizer, collate, data: TofuData, config, max_new_tokens: int) -> dict:
    groups = sets(data, config.max_probes)
    flat = [(name, r) for name, rows in groups.items() for r in rows]
    outputs = answers(model, tokenizer, collate, [r["question"] for _, r in flat], data.chat, max_new_tokens, config)
    out: dict = {}
    for name in SETS:
        put(out, f"{name}_qa_rouge_l_recall", [recall(o, r["answer"]) for o, (n, r) in zip(outputs, flat) if n == name])
    return out


def min_k_auc(model, tokenizer, collate, data: TofuData, config) -> tuple[float, float]:
    """P(a holdout answer looks more member-like than a forget answer) under Min-40% of the answer
    tokens (EOS left out), and its standard error."""
    requests = _Requests(tokenizer, collate, data.chat)
    forget = [requests.add(r["question"], r["answer"]) for r in common.first(data.rows["forget_perturbed"],
                                                                              config.max_probes)]
    holdout = [requests.add(r["question"], r["answer"]) for r in common.first(data.rows["holdout"], config.max_probes)]
    scores = requests.score(model, config)

    def stat(i: int) -> float:
        tokens = scores[i].token_logprobs[:-1]
        return metrics.min_k_score(tokens, MIN_K) if tokens.numel() else 0.0

    value = metrics.auc([stat(i) for i in forget], [stat(i) for i in holdout])
    return value, metrics.auc_stderr(value, len(forget), len(holdout))


def _mia(model, tokenizer, collate, data: TofuData, refs, config) -> dict:
    value, se = min_k_auc(model, tokenizer, collate, data, config)
    reference = 0.5 if refs is None or refs.auc is None else refs.auc
    out = {"mia_min_k_auc": value, "mia_min_k_auc_stderr": se}
    if reference > 0:
        out.update(privleak=metrics.privleak(value, reference), privleak_stderr=se / reference * 100)
    else:
        out.update(privleak=math.nan, privleak_stderr=math.nan)
    return out


def evaluate(model, tokenizer, collate, data: TofuData, refs, config, parts: tuple, max_new_tokens: int) -> dict:
    out: dict = {}
    if "likelihood" in parts:
        out.update(_likelihood(model, tokenizer, collate, data, refs, config))
    if "generation" in parts:
        out.update(_generation(model, tokenizer, collate, data, config, max_new_tokens))
    if all(name in out for name in UTILITY):
        out["model_utility"] = metrics.model_utility([out[name] for name in UTILITY])
        out["model_utility_stderr"] = math.nan  # a harmonic mean of means
    if "mia" in parts:
        out.update(_mia(model, tokenizer, collate, data, refs, config))
    return out


# ---------------------------------------------------------------------------------------------
# the benchmark


@dataclass
class TofuReferences:
    """The retain model's forget truth ratios and Min-K AUC (None without one), the target's scores."""

    forget_ratios: list | None = None
    auc: float | None = None
    baseline: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Tofu:
    split: str = "forget10"
    source: str = DEFAULT_SOURCE
    chat: bool = True
    max_new_tokens: int = MAX_NEW_TOKENS
    name: str = "tofu"
    declared: Declaration = DECLARED

    def metrics(self, config=None) -> tuple[Metric, ...]:
        return _metrics()

    def key(self) -> str:
        """Hash of the source (a local directory's contents), the split and ``chat`` (what a
        preparation depends on; not ``max_new_tokens``, evaluation only)."""
        blob = {"format": FORMAT_VERSION, "source": self.source, "split": self.split, "chat": self.chat}
        local = Path(self.source).expanduser()
        if local.is_dir():
            blob.update(source=str(local.resolve()), files=_digest(local))
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def materialize(self, cache: str | Path) -> TofuData:
        """The split's configs under ``cache/tofu-<key>`` (written once, atomically), read back."""
        if not (Path(self.source).expanduser().is_dir() or _HUB_ID.match(self.source)):
            fail("tofu parameter 'source'", "a hub dataset id (owner/name) or an existing local directory laid out "
                 "as <root>/<config>/train.jsonl", self.source)

        def write(tmp: Path) -> None:
            for config in configs(self.split).values():
                layouts.write(tmp, "tofu", config, "train", load(self.source, config))

        marker = json.dumps({"source": self.source, "split": self.split}) + "\n"
        return self.read(common.complete(Path(cache) / f"tofu-{self.key()}", write, marker))

    def read(self, root: str | Path) -> TofuData:
        return read(root, self.split, self.chat)

    def references(self, target, oracle, tokenizer, collate, data: TofuData, config) -> TofuReferences:
        """The retain model's forget truth ratios and AUC (when given), then the target's scores."""
        refs = TofuReferences()
        if oracle is not None:
            refs.forget_ratios = forget_ratios(oracle, tokenizer, collate, data, config)
            refs.auc = min_k_auc(oracle, tokenizer, collate, data, config)[0]
        refs.baseline = self.evaluate(target, tokenizer, collate, data, refs, config, config.parts)
        return refs

    def evaluate(self, model, tokenizer, collate, data: TofuData, refs, config, parts: tuple) -> dict:
        return evaluate(model, tokenizer, collate, data, refs, config, parts, self.max_new_tokens)

    def recall(self, model, tokenizer, collate, data: TofuData, probes: list[dict], config) -> list[float]:
        """Recall of the trained questions, asked as they were trained (the collator's prompt),
        ``config.max_new_tokens`` new tokens: what a preparation checks."""
        prompts = [collate.prompt_ids(common.prompt_text(p["question"], data.chat)) for p in probes]
        outputs = inference.generate(model, tokenizer, prompts, max_new_tokens=config.max_new_tokens,
                                     batch_size=config.batch_size, autocast=config.autocast)
        return [recall(o.strip(), p["answer"]) for o, p in zip(outputs, probes)]


@register("tofu")
def tofu(split="forget10", source=DEFAULT_SOURCE, chat=True, max_new_tokens=MAX_NEW_TOKENS, **unknown) -> Tofu:
    if unknown:
        raise ValueError(f"unknown tofu parameter {sorted(unknown)[0]!r}; allowed: {', '.join(PARAMS)}")
    check(split in SPLITS, "tofu parameter 'split'", f"one of {', '.join(SPLITS)}", split)
    check(isinstance(source, (str, os.PathLike)) and bool(str(source).strip()), "tofu parameter 'source'",
          "a hub dataset id (owner/name) or a local directory", source)
    check(isinstance(chat, bool), "tofu parameter 'chat'", "true or false", chat)
    check_int("tofu parameter 'max_new_tokens'", max_new_tokens, 1)
    local = Path(source).expanduser()
    return Tofu(split, str(local.resolve()) if local.is_dir() else str(source), chat, max_new_tokens)
