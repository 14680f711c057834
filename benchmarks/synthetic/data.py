"""The synthetic benchmark's data as read back from its MUSE / RWKU files."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path

from benchmarks import layouts
from benchmarks.common import qa_example
from benchmarks.synthetic.templates import UTILITY_MC


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
    utility_mc: tuple = ()  # general-knowledge multiple choice: ({"question", "choices", "answer"}, ...)

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

    def check_probes(self, *, with_forget: bool) -> list[Probe]:
        """Trained questions whose recall says a preparation took."""
        return (self.probes["forget_qa"] if with_forget else []) + self.probes["retain_qa"]

    def forget_probes(self) -> list[Probe]:
        return self.probes["forget_qa"]

    def forget_people(self) -> list[str]:
        """The forget people, in the benchmark's order."""
        return list(dict.fromkeys(p.subject for p in self.probes["forget_qa"]))

    def forget_groups(self) -> list[str]:
        """The person each forget example is about, in ``forget_examples()``'s order (a bio or a QA
        pair names its person in full; a forget bio names no other forget person)."""
        people = self.forget_people()
        return [_person_in(e.get("text") or e["question"], people) for e in self.forget_examples()]

    def with_forget_groups(self, people) -> SyntheticData:
        """The same data whose forget probes (FB, QA, AA, paraphrased QA, verbatim bios) are those of
        ``people`` only: what a relearning attack that trained on the other forget people is scored on."""
        everyone, kept = self.forget_people(), set(people)
        probes = {g: [p for p in group if _person_in(p.subject or p.question, everyone) in kept]
                  if g.startswith("forget_") else group for g, group in self.probes.items()}
        verbatim = [r for r in self.verbatim if _person_in(r["prompt"] + r["gt"], everyone) in kept]
        return dataclasses.replace(self, probes=probes, verbatim=verbatim)

    def corpus_texts(self) -> list[str]:
        """Everything a from-scratch tokenizer is trained on (so every probe is in-vocabulary)."""
        texts = [t for split in self.texts.values() for t in split]
        texts += [f"{r['question']} {r['answer']}" for rows in self.qa.values() for r in rows]
        texts += [f"{p.question} {p.answer}" for group in self.probes.values() for p in group]
        return texts


def _person_in(text: str, people: list[str]) -> str:
    """The person of ``people`` that ``text`` names in full (the longest name when several match)."""
    named = [p for p in people if re.search(rf"(?<!\w){re.escape(p)}(?!\w)", text)]
    if not named:
        raise ValueError(f"no forget person is named in {text[:60]!r}")
    return max(named, key=len)


def _probes(rows: list[dict], question: str = "query", answer: str = "answer") -> list[Probe]:
    return [Probe(r[question], r[answer], r.get("type", ""), r.get("subject", "")) for r in rows]


def read(root: str | Path, chat: bool, mc_questions: int | None = None) -> SyntheticData:
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
    # The multiple-choice set is the same for every parameter set and is never trained on, so it
    # comes from the templates, not from the written files.
    utility_mc = tuple({"question": q, "choices": list(choices), "answer": answer}
                       for q, choices, answer in UTILITY_MC[:mc_questions])
    return SyntheticData(root, chat, texts, qa, probes, muse("verbmem", "forget"), mia, utility_mc)
