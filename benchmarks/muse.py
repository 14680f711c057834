"""MUSE-News and MUSE-Books (Shi et al. 2024) with the benchmark's official protocol
(``docs/benchmarks/muse.md``).

``benchmarks.get("muse", corpus="news" | "books", source=..., auc_retrain=...)``
→ :class:`Muse`. ``source`` is a hub dataset id (default ``muse-bench/MUSE-News`` /
``muse-bench/MUSE-Books``) or a local directory ``<root>/<config>/<split>.jsonl``; either is read
through :func:`benchmarks.layouts.rows` (one schema check, older ``retain2_*`` split names
accepted), copied once under ``cache/muse-<key>/`` and read back from there without network.

Metrics (each with ``<name>_stderr``, the standard error of the mean over items):

- ``forget_verbmem_rouge_l_f1``: greedy 128 new tokens from each ``verbmem`` prompt (BOS added); the reference
  is ``tokenizer(gt)``'s first 128 ids decoded (BOS, where the tokenizer adds one, counts as one
  of the 128, as in the official code); score = ROUGE-L F1 × 100 (``rouge_score``, no stemmer).
- ``forget_knowmem_rouge_l_f1`` / ``retain_knowmem_rouge_l_f1``: prompt = the split's 10 ICL pairs as
  ``"Question: {q}\\nAnswer: {a}\\n\\n"`` followed by ``"Question: {q}\\nAnswer: "``; greedy 32 new
  tokens, cut at the first ``"\\n\\n"``, ``"\\nQuestion"`` or ``"Question:"``; ROUGE-L F1 × 100
  against the answer. KnowMem on D_r is the utility axis.
- ``mia_min_k_auc``: per text, s = mean of its lowest ⌊0.4·n⌋ (≥ 1) token log-probs (the whole text,
  BOS added, so every text token is scored); AUC = P(s_holdout > s_forget) + ½ P(tie), holdout
  labelled 1 ("member"), forget 0; a model that memorised the forget set scores ≈ 0. Its standard
  error is Hanley & McNeil's.
- ``privleak`` = (AUC − AUC_retrain) / AUC_retrain × 100 (0 is ideal, the target ≈ −100), with
  AUC_retrain the oracle's AUC when :meth:`Muse.references` gets an oracle, else ``auc_retrain``
  (the published 0.4772 News / 0.5393 Books); its standard error is AUC's / AUC_retrain × 100.

Decoding lengths, the stop strings and k = 0.4 are protocol constants; from the evaluation config
only ``batch_size``, ``autocast`` and ``max_probes`` (the first items of every group: verbmem,
each QA split, each PrivLeak split; ICL pairs are never cut) apply. With ``max_probes`` set, a
published AUC_retrain was measured on all 100 texts per split, so PrivLeak is only indicative.

KL to the retrained model is not part of the MUSE protocol and is left out: the oracle, when given,
only supplies AUC_retrain. The ``kl`` and ``utility`` parts are skipped; ``privleak/retain`` is
read and kept but PrivLeak compares forget with holdout only.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from benchmarks import common, inference, layouts, metrics
from benchmarks.common import first as _first
from benchmarks.common import put as _put
from benchmarks.spec import Declaration, Front, Metric, Selection, check_declaration, register
from unlearn.validate import check, fail, is_number

FORMAT_VERSION = 1
CORPORA = {"news": ("muse-bench/MUSE-News", 0.4772), "books": ("muse-bench/MUSE-Books", 0.5393)}
VERBMEM_TOKENS = 128
KNOWMEM_TOKENS = 32
KNOWMEM_STOP = ("\n\n", "\nQuestion", "Question:")
MIN_K = 0.4
SPLITS = (("raw", "forget"), ("raw", "retain1"), ("raw", "retain2"), ("raw", "holdout"),
          ("verbmem", "forget"),
          ("knowmem", "forget_qa"), ("knowmem", "retain_qa"), ("knowmem", "forget_qa_icl"),
          ("knowmem", "retain_qa_icl"),
          ("privleak", "forget"), ("privleak", "retain"), ("privleak", "holdout"))
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")

METRICS = (
    Metric("forget_verbmem_rouge_l_f1", "min", "forget", "VerbMem on D_f: ROUGE-L F1 × 100 of 128-token continuations",
           scale=100),
    Metric("forget_knowmem_rouge_l_f1", "min", "forget", "KnowMem on D_f: ROUGE-L F1 × 100 of in-context answers",
           scale=100),
    Metric("retain_knowmem_rouge_l_f1", "max", "retain",
           "KnowMem on D_r (MUSE's utility): ROUGE-L F1 × 100 of in-context answers", scale=100),
    Metric("privleak", 0.0, "privacy", "(AUC − AUC_retrain) / AUC_retrain × 100 of the Min-40% AUC", scale=100),
    Metric("mia_min_k_auc", 0.5, "privacy", "Min-40% AUC, P(holdout text looks more member-like than a forget text)"),
)
# The seed paper's Figure 2 (KnowMem on D_f against KnowMem on D_r), and VerbMem against the same.
DECLARED = Declaration(
    needs_oracle=False, can_prepare=False,
    fronts=(Front("forget_knowmem_rouge_l_f1", "retain_knowmem_rouge_l_f1"),
            Front("forget_verbmem_rouge_l_f1", "retain_knowmem_rouge_l_f1")),
    trajectories=("forget_verbmem_rouge_l_f1", "forget_knowmem_rouge_l_f1", "retain_knowmem_rouge_l_f1"),
    selection=Selection("forget_knowmem_rouge_l_f1", "retain_knowmem_rouge_l_f1", oracle_tolerance=0.05,
                        target_fraction=0.5, floors={"retain_knowmem_rouge_l_f1": 0.5}))
check_declaration("muse", METRICS, DECLARED)


# ---------------------------------------------------------------------------------------------
# the protocol as pure functions


def knowmem_prompt(icl: Sequence[dict], question: str) -> str:
    """The ICL pairs as ``"Question: {q}\\nAnswer: {a}\\n\\n"``, then ``"Question: {q}\\nAnswer: "``."""
    shots = "".join(f"Question: {pair['question']}\nAnswer: {pair['answer']}\n\n" for pair in icl)
    return shots + f"Question: {question}\nAnswer: "


def cut_answer(output: str) -> str:
    """``output`` before the first ``"\\n\\n"``, ``"\\nQuestion"`` or ``"Question:"``."""
    for stop in KNOWMEM_STOP:
        output = output.split(stop)[0]
    return output


def rouge_f1(output: str, reference: str) -> float:
    """ROUGE-L F1 × 100 (Google's rouge_score rougeL, no stemmer)."""
    return metrics.rouge_l(output, reference, "muse")["f1"] * 100


def knowmem_score(output: str, answer: str) -> float:
    return rouge_f1(cut_answer(output), answer)


def verbmem_reference(tokenizer, gt: str) -> str:
    """The first 128 ids of ``tokenizer(gt)`` (special tokens included, as the official code
    tokenizes it), decoded without special tokens."""
    ids = tokenizer(gt, add_special_tokens=True)["input_ids"][:VERBMEM_TOKENS]
    return tokenizer.decode(ids, skip_special_tokens=True)


def lowest_mean(token_logprobs) -> float:
    """Mean of the lowest ⌊0.4·n⌋ (≥ 1) token log-probs: higher = more likely = more member-like."""
    return -metrics.min_k_score(token_logprobs, MIN_K)


def privleak_scores(forget_logprobs: Sequence, holdout_logprobs: Sequence, auc_retrain: float | None) -> dict:
    """``mia_min_k_auc`` and ``privleak`` (with standard errors) from per-text token log-probs.

    AUC = P(s_holdout > s_forget) + ½ P(tie) over s = :func:`lowest_mean`. PrivLeak is left out
    when ``auc_retrain`` is None, and NaN when it is 0 (an oracle that separated the texts
    perfectly)."""
    holdout = [lowest_mean(lp) for lp in holdout_logprobs]
    forget = [lowest_mean(lp) for lp in forget_logprobs]
    value = metrics.auc(holdout, forget)
    se = metrics.auc_stderr(value, len(holdout), len(forget))
    out = {"mia_min_k_auc": value, "mia_min_k_auc_stderr": se}
    if auc_retrain is None:
        return out
    if auc_retrain > 0:
        out.update(privleak=metrics.privleak(value, auc_retrain), privleak_stderr=se / auc_retrain * 100)
    else:
        out.update(privleak=float("nan"), privleak_stderr=float("nan"))
    return out


# ---------------------------------------------------------------------------------------------
# model calls


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, stop: tuple, config) -> list[str]:
    """Greedy continuations (BOS added to the prompts by the tokenizer)."""
    return inference.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=stop,
                              batch_size=config.batch_size, autocast=config.autocast)


def knowmem_prompts(data: MuseData, split: str, limit: int | None) -> tuple[list[str], list[str]]:
    """(prompts, answers) of ``forget_qa`` or ``retain_qa``, with that split's ICL pairs."""
    rows = _first(data.knowmem[split], limit)
    icl = data.knowmem[f"{split}_icl"]
    return [knowmem_prompt(icl, r["question"]) for r in rows], [r["answer"] for r in rows]


def knowmem(model, tokenizer, data: MuseData, config) -> dict:
    forget, forget_answers = knowmem_prompts(data, "forget_qa", config.max_probes)
    retain, retain_answers = knowmem_prompts(data, "retain_qa", config.max_probes)
    outputs = generate(model, tokenizer, forget + retain, KNOWMEM_TOKENS, KNOWMEM_STOP, config)
    scores = [knowmem_score(o, a) for o, a in zip(outputs, forget_answers + retain_answers)]
    out: dict = {}
    _put(out, "forget_knowmem_rouge_l_f1", scores[:len(forget)])
    _put(out, "retain_knowmem_rouge_l_f1", scores[len(forget):])
    return out


def verbmem(model, tokenizer, data: MuseData, config) -> dict:
    rows = _first(data.verbmem, config.max_probes)
    outputs = generate(model, tokenizer, [r["prompt"] for r in rows], VERBMEM_TOKENS, (), config)
    out: dict = {}
    _put(out, "forget_verbmem_rouge_l_f1",
         [rouge_f1(o, verbmem_reference(tokenizer, r["gt"])) for o, r in zip(outputs, rows)])
    return out


def text_logprobs(model, tokenizer, texts: list[str], config) -> list:
    return inference.text_logprobs(model, tokenizer, texts, batch_size=config.batch_size, autocast=config.autocast)


def mia(model, tokenizer, data: MuseData, auc_retrain: float | None, config) -> dict:
    forget = text_logprobs(model, tokenizer, _first(data.privleak["forget"], config.max_probes), config)
    holdout = text_logprobs(model, tokenizer, _first(data.privleak["holdout"], config.max_probes), config)
    return privleak_scores(forget, holdout, auc_retrain)


# ---------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True)
class MuseData:
    root: Path
    texts: dict  # raw split (forget, retain1, retain2, holdout) -> [text]
    verbmem: list  # [{"prompt", "gt", ...}]
    knowmem: dict  # forget_qa, retain_qa, forget_qa_icl, retain_qa_icl -> [{"question", "answer"}]
    privleak: dict  # forget, retain, holdout -> [text]
    chat: bool = False

    def forget_examples(self) -> list[dict]:
        return [{"text": t} for t in self.texts["forget"]]

    def retain_examples(self) -> list[dict]:
        """The retain term trains on retain1; KnowMem on D_r asks about retain2."""
        return [{"text": t} for t in self.texts["retain1"]]


def read(root: str | Path) -> MuseData:
    """A materialised copy, read through the local MUSE loader (no network)."""
    root = Path(root)

    def splits(config: str) -> dict:
        return {split: layouts.load(root, "muse", config, split) for c, split in SPLITS if c == config}

    def texts(config: str) -> dict:
        return {split: [r["text"] for r in rows] for split, rows in splits(config).items()}

    return MuseData(root, texts("raw"), splits("verbmem")["forget"], splits("knowmem"), texts("privleak"))


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".jsonl", ".parquet") and p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


@dataclass
class MuseReferences:
    """What every evaluation of a sweep compares against: AUC_retrain and the target's scores."""

    auc_retrain: float
    auc_retrain_source: str  # "oracle", "published" or "parameter"
    baseline: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Muse:
    corpus: str = "news"
    source: str = CORPORA["news"][0]
    auc_retrain: float = CORPORA["news"][1]
    name: str = "muse"
    declared: Declaration = DECLARED

    @property
    def chat(self) -> bool:
        return False

    def metrics(self, config=None) -> tuple[Metric, ...]:
        return METRICS

    def key(self) -> str:
        """Hash of the source: the hub id, or a local directory's path and file contents."""
        blob = {"format": FORMAT_VERSION, "source": self.source}
        local = Path(self.source).expanduser()
        if local.is_dir():
            blob.update(source=str(local.resolve()), files=_digest(local))
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def materialize(self, cache: str | Path) -> MuseData:
        """Every needed split under ``cache/muse-<key>`` (written once, atomically), read back.

        The source is checked here, not when the benchmark is built: workers rebuild it from its
        parameters and only read the copy, so they need not see a local source directory."""
        if not (Path(self.source).expanduser().is_dir() or _HUB_ID.match(self.source)):
            fail("muse.source", "a hub dataset id (owner/name) or an existing local directory laid out as "
                 "<root>/<config>/<split>.jsonl", self.source)
        def write(tmp: Path) -> None:
            for config, split in SPLITS:
                layouts.write(tmp, "muse", config, split, layouts.rows(self.source, "muse", config, split))

        marker = json.dumps({"corpus": self.corpus, "source": self.source}) + "\n"
        return read(common.complete(Path(cache) / f"muse-{self.key()}", write, marker))

    def read(self, root: str | Path) -> MuseData:
        return read(root)

    def references(self, target, oracle, tokenizer, collate, data: MuseData, config) -> MuseReferences:
        """AUC_retrain (the oracle's AUC when an oracle is given) and the target's scores."""
        if oracle is not None:
            refs = MuseReferences(mia(oracle, tokenizer, data, None, config)["mia_min_k_auc"], "oracle")
        else:
            published = self.auc_retrain == CORPORA[self.corpus][1]
            refs = MuseReferences(self.auc_retrain, "published" if published else "parameter")
        refs.baseline = self.evaluate(target, tokenizer, collate, data, refs, config, config.parts)
        return refs

    def evaluate(self, model, tokenizer, collate, data: MuseData, refs, config, parts: tuple) -> dict:
        """Parts ``generation`` (KnowMem f / r), ``verbmem`` and ``mia`` (AUC, PrivLeak); without
        references, PrivLeak uses ``auc_retrain``."""
        out: dict = {}
        if "generation" in parts:
            out.update(knowmem(model, tokenizer, data, config))
        if "verbmem" in parts:
            out.update(verbmem(model, tokenizer, data, config))
        if "mia" in parts:
            out.update(mia(model, tokenizer, data, self.auc_retrain if refs is None else refs.auc_retrain, config))
        return out


@register("muse")
def muse(corpus: str = "news", source=None, auc_retrain=None, **unknown) -> Muse:
    if unknown:
        raise ValueError(f"unknown muse parameter {sorted(unknown)[0]!r}; allowed: corpus, source, auc_retrain")
    check(corpus in CORPORA, "muse.corpus", f"one of {', '.join(CORPORA)}", corpus)
    default_source, default_auc = CORPORA[corpus]
    source = default_source if source is None else source
    check(isinstance(source, (str, os.PathLike)) and bool(str(source).strip()), "muse.source",
          "a hub dataset id (owner/name) or a local directory", source)
    auc_retrain = default_auc if auc_retrain is None else auc_retrain
    check(is_number(auc_retrain) and 0 < auc_retrain <= 1, "muse.auc_retrain", "a number in (0, 1]", auc_retrain)
    return Muse(corpus, str(source), float(auc_retrain))
