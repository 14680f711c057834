"""The embedded synthetic benchmark: fictitious people, a target trained on everyone and a
retrained oracle trained without the forget people (``docs/benchmarks/synthetic.md``).

``benchmarks.get("synthetic", people=40, forget_fraction=0.1, ...)`` → :class:`Synthetic`;
``.materialize(dir)`` writes the MUSE / RWKU files (deterministic) and reads them back through the
schema-level loaders into :class:`SyntheticData`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from benchmarks import common
from benchmarks.spec import Declaration, Front, Metric, Selection, check_declaration, register
from benchmarks.synthetic import evaluate as ev
from benchmarks.synthetic import files
from benchmarks.synthetic.data import Probe, SyntheticData, read  # noqa: F401  (the data's public names)
from benchmarks.synthetic.world import SyntheticParams

FORMAT_VERSION = 1


def _metrics(gammas) -> tuple[Metric, ...]:
    m = [Metric(f"forget_{g}_rouge_l_recall", "min", "forget", f"ROUGE-L recall of forget {d} answers")
         for g, d in (("fb", "fill-in-the-blank"), ("qa", "QA (trained forms)"), ("aa", "adversarial"),
                      ("all", "FB/QA/AA pooled"), ("qa_paraphrase", "paraphrased QA"))]
    m.append(Metric("forget_verbmem_rouge_l_f1", "min", "forget", "ROUGE-L F1 of forget bio continuations"))
    m += [Metric(f"{g}_rouge_l_recall", "max", role, f"ROUGE-L recall of {d}")
          for g, role, d in (("retain_qa", "retain", "retain QA"),
                             ("retain_qa_paraphrase", "retain", "paraphrased retain QA"),
                             ("neighbor_fb", "neighbour", "neighbour fill-in-the-blank"),
                             ("neighbor_qa", "neighbour", "neighbour QA"),
                             ("utility_qa", "utility", "general-knowledge QA"))]
    m += [Metric(f"{g}_answer_prob", direction, role, f"exp(mean token log-prob) of the {d} reference answers, "
                 "teacher-forced")
          for g, direction, role, d in (("forget_qa", "min", "forget", "forget QA (trained forms)"),
                                        ("forget_qa_paraphrase", "min", "forget", "paraphrased forget QA"),
                                        ("retain_qa", "max", "retain", "retain QA"),
                                        ("retain_qa_paraphrase", "max", "retain", "paraphrased retain QA"),
                                        ("neighbor_qa", "max", "neighbour", "neighbour QA"))]
    m.append(Metric("utility_mc_accuracy", "max", "utility",
                    "general-knowledge multiple-choice accuracy (highest summed option log-prob of 4)"))
    m.append(Metric("utility_mc_prob", "max", "utility",
                    "probability of the right option among the 4 (softmax of the option scores)"))
    m.append(Metric("mia_min_k_auc", 0.5, "privacy", "Min-K% (k=0.4) AUC, holdout = member-like vs forget"))
    m.append(Metric("privleak", 0.0, "privacy", "(AUC − AUC_oracle) / AUC_oracle × 100", scale=100))
    for tokens in ("forget", "forget_facts", "retain"):
        for a, b in (("oracle", "model"), ("model", "oracle")):
            m.append(Metric(f"kl_{a}_{b}_{tokens}", "min", "kl", f"KL(p_{a} ‖ p_{b}) over {tokens} tokens"))
    for label in ["unilogit"] + [f"undial_g{g:g}" for g in gammas]:
        for tokens in ("forget", "forget_facts"):
            for a, b in (("oracle", label), (label, "oracle")):
                m.append(Metric(f"softlabel_kl_{a}_{b}_{tokens}", "min", "kl",
                                f"KL between the oracle and {label}'s soft labels over {tokens} tokens"))
    return tuple(m)


DECLARED = Declaration(
    needs_oracle=True, can_prepare=True,
    oracle_params=("seed", "people", "forget_fraction", "holdout_fraction", "facts", "bios"),
    fronts=(Front("forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall"),
            Front("forget_verbmem_rouge_l_f1", "utility_qa_rouge_l_recall"),
            Front("forget_all_rouge_l_recall", "neighbor_qa_rouge_l_recall"),
            Front("forget_qa_answer_prob", "retain_qa_answer_prob")),
    trajectories=("forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall", "utility_qa_rouge_l_recall",
                  "utility_mc_accuracy"),
    selection=Selection("forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall", oracle_tolerance=0.05,
                        floors={"retain_qa_rouge_l_recall": 0.5, "utility_qa_rouge_l_recall": 0.5,
                                "utility_mc_accuracy": 0.8}),
    forget_qa=True, forget_groups="person")
check_declaration("synthetic", _metrics(()), DECLARED)


@dataclass(frozen=True)
class Synthetic:
    params: SyntheticParams
    name: str = "synthetic"
    declared: Declaration = DECLARED

    @property
    def chat(self) -> bool:
        return self.params.prompt == "chat"

    def metrics(self, config: common.EvalConfig | None = None) -> tuple[Metric, ...]:
        return _metrics(config.softlabel_gammas if config else ())

    def key(self) -> str:
        blob = json.dumps({"format": FORMAT_VERSION, **dataclasses.asdict(self.params)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def write(self, root: str | Path) -> Path:
        return files.write(root, self.params)

    def materialize(self, cache: str | Path) -> SyntheticData:
        """Files under ``cache/synthetic-<key>`` (written once, atomically), read back."""
        return self.read(common.complete(Path(cache) / f"synthetic-{self.key()}", self.write))

    def read(self, root: str | Path) -> SyntheticData:
        return read(root, self.chat, mc_questions=self.params.mc_questions)

    def references(self, target, oracle, tokenizer, collate, data: SyntheticData, config):
        if oracle is None:  # scores of the model alone; nothing oracle-relative
            return ev.Scores(ev.evaluate(target, tokenizer, collate, data, None, config))
        return ev.references(target, oracle, tokenizer, collate, data, config)

    def evaluate(self, model, tokenizer, collate, data: SyntheticData, refs, config, parts: tuple) -> dict:
        refs = refs if isinstance(refs, ev.References) else None
        return ev.evaluate(model, tokenizer, collate, data, refs, config, parts=parts)

    def recall(self, model, tokenizer, collate, data: SyntheticData, probes: list, config) -> list[float]:
        """ROUGE-L recall of the greedy answers to ``probes`` (preparation's check)."""
        return ev.qa_recall(model, tokenizer, collate, probes, data.chat, config)


@register("synthetic")
def synthetic(**params) -> Synthetic:
    allowed = [f.name for f in dataclasses.fields(SyntheticParams)]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"unknown synthetic parameter {unknown[0]!r}; allowed: {', '.join(allowed)}")
    return Synthetic(SyntheticParams(**params))
