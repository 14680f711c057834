"""The embedded synthetic benchmark: fictitious people, a target trained on everyone and a
retrained oracle trained without the forget people (BENCHMARKS.md §1).

``benchmarks.get("synthetic", people=40, forget_fraction=0.1, ...)`` → :class:`Synthetic`;
``.materialize(dir)`` writes the MUSE / RWKU files (deterministic) and reads them back through the
schema-level loaders into :class:`SyntheticData`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks import layouts
from benchmarks.spec import Metric, register
from benchmarks.synthetic import files
from benchmarks.synthetic.world import SyntheticParams

FORMAT_VERSION = 1
UNDIAL_GAMMAS = (3.0, 10.0, 30.0)


def prompt_text(question: str, chat: bool) -> str:
    """How a question is wrapped, for training and evaluation alike (chat: the tokenizer's chat
    template is applied later by the collator, so the question stays bare)."""
    return question if chat else f"Question: {question}\nAnswer:"


def qa_example(question: str, answer: str, chat: bool) -> dict:
    return {"question": prompt_text(question, chat), "answer": answer if chat else f" {answer}"}


@dataclass(frozen=True)
class Probe:
    question: str
    answer: str
    kind: str = ""
    subject: str = ""


@dataclass(frozen=True)
class SyntheticData:
    root: Path
    chat: bool
    texts: dict  # raw split -> [text]
    qa: dict  # knowmem split -> [{"question", "answer"}]
    probes: dict  # probe group -> [Probe]
    verbatim: list  # [{"prompt", "gt"}]
    mia: dict  # forget / retain / holdout -> [text]

    def _qa_examples(self, *splits: str) -> list[dict]:
        return [qa_example(r["question"], r["answer"], self.chat) for s in splits for r in self.qa[s]]

    def _text_examples(self, *splits: str) -> list[dict]:
        return [{"text": t} for s in splits for t in self.texts[s]]

    def train_examples(self, *, with_forget: bool, utility: bool) -> list[dict]:
        """The fine-tuning corpus of the target (``with_forget``) or of the oracle."""
        splits = (["forget"] if with_forget else []) + ["retain1", "retain2", "neighbor"]
        qa = (["forget_qa"] if with_forget else []) + ["retain1_qa", "retain_qa", "neighbor_qa"]
        extra = [qa_example(p.question, p.answer, self.chat) for p in self.probes["utility_qa"]] if utility else []
        return self._text_examples(*splits) + self._qa_examples(*qa) + extra

    def forget_examples(self) -> list[dict]:
        return self._text_examples("forget") + self._qa_examples("forget_qa")

    def retain_examples(self) -> list[dict]:
        """What the retain term trains on during unlearning (retain2 people are only evaluated)."""
        return self._text_examples("retain1") + self._qa_examples("retain1_qa")

    def retain_eval_examples(self) -> list[dict]:
        return self._text_examples("retain2") + self._qa_examples("retain_qa")


def _probes(rows: list[dict], question: str = "query", answer: str = "answer") -> list[Probe]:
    return [Probe(r[question], r[answer], r.get("type", ""), r.get("subject", "")) for r in rows]


def read(root: str | Path, chat: bool) -> SyntheticData:
    """Read a written synthetic benchmark back through the MUSE and RWKU loaders."""
    root = Path(root)
    muse = lambda config, split: layouts.load(root / "muse", "muse", config, split)  # noqa: E731
    rwku = lambda config: layouts.load(root / "rwku", "rwku", config, "test")  # noqa: E731
    texts = {s: [r["text"] for r in muse("raw", s)]
             for s in ("forget", "retain1", "retain2", "holdout", "neighbor", "forget_heldout")}
    qa = {s: muse("knowmem", s) for s in ("forget_qa", "retain_qa", "retain1_qa", "neighbor_qa",
                                          "forget_qa_paraphrase", "retain_qa_paraphrase", "forget_qa_icl")}
    blank = lambda rows: [dict(r, query=f"Fill in the blank: {r['query']}") for r in rows]  # noqa: E731
    probes = {
        "forget_fb": _probes(blank(rwku("forget_level1"))),
        "forget_qa": _probes(rwku("forget_level2")),
        "forget_aa": _probes(rwku("forget_level3")),
        "forget_qa_paraphrase": _probes(qa["forget_qa_paraphrase"], "question"),
        "retain_qa": _probes(qa["retain_qa"], "question"),
        "retain_qa_paraphrase": _probes(qa["retain_qa_paraphrase"], "question"),
        "neighbor_fb": _probes(blank(rwku("neighbor_level1"))),
        "neighbor_qa": _probes(rwku("neighbor_level2")),
        "utility_qa": [Probe(r["question"], r["answers"][0], "general") for r in rwku("utility_factuality")],
    }
    mia = {s: [r["text"] for r in muse("privleak", s)] for s in ("forget", "retain", "holdout")}
    return SyntheticData(root, chat, texts, qa, probes, muse("verbmem", "forget"), mia)


def _metrics(gammas) -> tuple[Metric, ...]:
    m = [Metric(f"forget_{g}_rouge_l_recall", "min", f"ROUGE-L recall of forget {d} answers")
         for g, d in (("fb", "fill-in-the-blank"), ("qa", "QA (trained forms)"), ("aa", "adversarial"),
                      ("all", "FB/QA/AA mean"), ("qa_paraphrase", "paraphrased QA"))]
    m.append(Metric("forget_verbmem_rouge_l_f1", "min", "ROUGE-L F1 of forget bio continuations"))
    m += [Metric(f"{g}_rouge_l_recall", "max", f"ROUGE-L recall of {d}")
          for g, d in (("retain_qa", "retain QA"), ("retain_qa_paraphrase", "paraphrased retain QA"),
                       ("neighbor_fb", "neighbour fill-in-the-blank"), ("neighbor_qa", "neighbour QA"),
                       ("utility_qa", "general-knowledge QA"))]
    m.append(Metric("mia_min_k_auc", 0.5, "Min-K% (k=0.4) AUC, holdout = member-like vs forget", per_epoch=True))
    m.append(Metric("privleak", 0.0, "(AUC − AUC_oracle) / AUC_oracle × 100"))
    for tokens in ("forget", "forget_facts", "retain"):
        for a, b in (("oracle", "model"), ("model", "oracle")):
            m.append(Metric(f"kl_{a}_{b}_{tokens}", "min", f"KL(p_{a} ‖ p_{b}) over {tokens} tokens"))
    for label in ["unilogit"] + [f"undial_g{g:g}" for g in gammas]:
        for tokens in ("forget", "forget_facts"):
            for a, b in (("oracle", label), (label, "oracle")):
                m.append(Metric(f"softlabel_kl_{a}_{b}_{tokens}", "min",
                                f"KL between the oracle and {label}'s soft labels over {tokens} tokens"))
    return tuple(m)


@dataclass(frozen=True)
class Synthetic:
    params: SyntheticParams
    undial_gammas: tuple = UNDIAL_GAMMAS
    name: str = "synthetic"

    @property
    def chat(self) -> bool:
        return self.params.prompt == "chat"

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return _metrics(self.undial_gammas)

    def key(self) -> str:
        blob = json.dumps({"format": FORMAT_VERSION, **dataclasses.asdict(self.params)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def write(self, root: str | Path) -> Path:
        return files.write(root, self.params)

    def materialize(self, cache: str | Path) -> SyntheticData:
        """Files under ``cache/synthetic-<key>`` (written once, atomically), read back."""
        root = Path(cache) / f"synthetic-{self.key()}"
        if not (root / "COMPLETE").is_file():
            root.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root.parent))
            self.write(tmp)
            (tmp / "COMPLETE").write_text("")
            shutil.rmtree(root, ignore_errors=True)
            os.replace(tmp, root)
        return read(root, self.chat)

    def read(self, root: str | Path) -> SyntheticData:
        return read(root, self.chat)

    def references(self, target, oracle, tokenizer, collate, data: SyntheticData, config):
        from benchmarks import evaluate

        if oracle is None:  # scores of the model alone; nothing oracle-relative
            return evaluate.Scores(evaluate.evaluate(target, tokenizer, collate, data, None, config))
        return evaluate.references(target, oracle, tokenizer, collate, data, config, gammas=self.undial_gammas)

    def evaluate(self, model, tokenizer, collate, data: SyntheticData, refs, config, parts: tuple) -> dict:
        from benchmarks import evaluate

        refs = refs if isinstance(refs, evaluate.References) else None
        return evaluate.evaluate(model, tokenizer, collate, data, refs, config, parts=parts)


@register("synthetic")
def synthetic(undial_gammas=UNDIAL_GAMMAS, **params) -> Synthetic:
    allowed = [f.name for f in dataclasses.fields(SyntheticParams)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown synthetic parameter {unknown[0]!r}; allowed: {', '.join(allowed + ['undial_gammas'])}")
    return Synthetic(SyntheticParams(**params), tuple(float(g) for g in undial_gammas))
