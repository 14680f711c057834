"""A bring-your-own benchmark from a directory of JSONL files, in the shape of the seed paper's
e-commerce task: forget a seller's listings, score forget and neighbour completions by ROUGE-L
recall and general ability by multiple choice. Layout and usage: ``docs/benchmarks/jsonl.md``.

``benchmarks.get("jsonl", path=..., max_new_tokens=32, chat=False)`` → :class:`Jsonl`;
``.materialize(cache)`` checks every file and copies them into ``cache/jsonl-<key>/`` (key = hash
of the files' contents and ``chat``), read back into :class:`JsonlData`. The source directory is
only read by ``key`` and ``materialize``; workers ``read`` the cached copy. With ``model.base`` the
service prepares a target (fine-tuned on forget ∪ retain) and an oracle (retain only) itself.

Metrics (every value with ``<name>_stderr``, all in [0, 1]):
- ``forget_completion_rouge_l_recall`` / ``neighbor_completion_rouge_l_recall``: ROUGE-L recall
  (the ``rouge`` package's, RWKU convention) of the greedy continuation of each raw-text ``prompt``
  (BOS added, never chat-templated: the forget texts are trained as raw text), cut at the first
  newline, against ``completion``; ``forget_qa_rouge_l_recall`` / ``retain_qa_rouge_l_recall`` the
  same for ``qa.jsonl`` questions, wrapped as ``Question: …\nAnswer:`` (or the chat template);
- ``utility_mc_accuracy``: the predicted choice is the one with the highest summed log-prob as a
  completion of the wrapped question (no letters, any number of choices);
- ``mia_min_k_auc``: Min-K% (k = 0.4) AUC = P(a ``holdout.jsonl`` text looks more member-like
  than a forget text), MUSE's PrivLeak AUC; only with a holdout file;
- ``kl_oracle_model_forget`` / ``kl_model_oracle_forget`` (and ``…_forget_facts``, the forget
  tokens the oracle gives p < 0.05): token-mean KL on the forget texts, only with an oracle.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmarks import common, inference, layouts, metrics
from benchmarks.common import prompt_text, put, qa_example
from benchmarks.spec import Declaration, Front, Metric, Selection, check_declaration, register
from unlearn.validate import check, check_int

FORMAT_VERSION = 2
TEXT = {"text": str}
COMPLETION = {"prompt": str, "completion": str}
# file -> (fields of every row, required)
FILES = {
    "forget.jsonl": (TEXT, True),
    "retain.jsonl": (TEXT, True),
    "forget_completion.jsonl": (COMPLETION, True),
    "neighbor_completion.jsonl": (COMPLETION, True),
    "qa.jsonl": ({"question": str, "answer": str, "split": str}, False),
    "utility_mc.jsonl": ({"question": str, "choices": list, "answer": int}, False),
    "holdout.jsonl": (TEXT, False),
}
QA_SPLITS = ("forget", "retain")
PARAMS = ("path", "max_new_tokens", "chat")
COMPLETION_STOP = ("\n",)


def _problem(row: dict, name: str, kind: type) -> str | None:
    """What is wrong with field ``name`` of ``row``, or None."""
    if name not in row:
        return f"lacks field {name!r}"
    value = row[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        return f"field {name!r} is {type(value).__name__}, expected {layouts.TYPE_NAMES[kind]}"
    if kind is str and not value.strip():
        return f"field {name!r} is blank, expected a non-empty string"
    if name == "split" and value not in QA_SPLITS:
        return f"field 'split' is {value!r}, expected 'forget' or 'retain'"
    if name == "choices" and (len(value) < 2 or not all(isinstance(c, str) and c.strip() for c in value)):
        return "field 'choices' must be a list of at least 2 non-empty strings"
    if kind is int and not 0 <= value < len(row["choices"]):
        return f"field 'answer' is {value}, expected an index into choices (0..{len(row['choices']) - 1})"
    return None


def check_rows(rows: list[dict], name: str, where: str) -> list[dict]:
    """Rows of file ``name`` after the schema check (one-line ``ValueError`` naming ``where``, the
    row, the field and the expected schema otherwise)."""
    schema = f"(each line of {name}: {layouts.describe(FILES[name][0])})"
    if not rows:
        raise ValueError(f"{where}: the file has no rows {schema}")
    for number, row in enumerate(rows, 1):
        for field_name, kind in FILES[name][0].items():
            problem = _problem(row, field_name, kind)
            if problem:
                raise ValueError(f"{where}: row {number} {problem} {schema}")
    return rows


def load(root: str | Path) -> dict[str, list[dict]]:
    """``{file: rows}`` of every file present under ``root``, each checked."""
    root, out = Path(root), {}
    for name, (schema, required) in FILES.items():
        path = root / name
        if path.is_file():
            out[name] = check_rows(layouts.read_jsonl(path), name, str(path))
        elif required:
            raise ValueError(f"{path}: required file not found (each line of {name}: {layouts.describe(schema)})")
    return out


@dataclass(frozen=True)
class JsonlData:
    root: Path
    chat: bool
    forget: list  # [text]
    retain: list  # [text]
    forget_completion: list  # [{"prompt", "completion"}]
    neighbor_completion: list  # [{"prompt", "completion"}]
    qa: list  # [{"question", "answer", "split"}]
    utility_mc: list  # [{"question", "choices", "answer"}]
    holdout: list  # [text], never trained: the non-members of the MIA

    def forget_examples(self) -> list[dict]:
        return [{"text": t} for t in self.forget]

    def retain_examples(self) -> list[dict]:
        return [{"text": t} for t in self.retain]

    def _qa(self, split: str) -> list[dict]:
        return [r for r in self.qa if r["split"] == split]

    def train_examples(self, *, with_forget: bool, utility: bool) -> list[dict]:
        """The fine-tuning corpus of a prepared target (``with_forget``: forget ∪ retain texts and
        QA pairs) or oracle (retain only); ``utility`` adds the multiple-choice answers."""
        texts = (self.forget if with_forget else []) + self.retain
        qa = (self._qa("forget") if with_forget else []) + self._qa("retain")
        extra = [qa_example(r["question"], r["choices"][r["answer"]], self.chat) for r in self.utility_mc] \
            if utility else []
        return [{"text": t} for t in texts] + [qa_example(r["question"], r["answer"], self.chat) for r in qa] + extra

    def forget_probes(self) -> list[dict]:
        return [{"prompt": r["prompt"], "answer": r["completion"], "qa": False} for r in self.forget_completion]

    def check_probes(self, *, with_forget: bool) -> list[dict]:
        """Completions and questions of what the prepared model was trained on."""
        neighbours = [{"prompt": r["prompt"], "answer": r["completion"], "qa": False} for r in self.neighbor_completion]
        qa = (self._qa("forget") if with_forget else []) + self._qa("retain")
        return ((self.forget_probes() if with_forget else []) + neighbours
                + [{"prompt": r["question"], "answer": r["answer"], "qa": True} for r in qa])

    def corpus_texts(self) -> list[str]:
        rows = self.forget_completion + self.neighbor_completion
        return (self.forget + self.retain + self.holdout + [r["prompt"] + r["completion"] for r in rows]
                + [f"{r['question']} {r['answer']}" for r in self.qa]
                + [f"{r['question']} {' '.join(r['choices'])}" for r in self.utility_mc])


def read(root: str | Path, chat: bool = False) -> JsonlData:
    rows = load(root)
    texts = lambda name: [r["text"] for r in rows.get(name, [])]  # noqa: E731
    return JsonlData(Path(root), chat, texts("forget.jsonl"), texts("retain.jsonl"), rows["forget_completion.jsonl"],
                     rows["neighbor_completion.jsonl"], rows.get("qa.jsonl", []), rows.get("utility_mc.jsonl", []),
                     texts("holdout.jsonl"))


@dataclass
class JsonlReferences:
    """What every evaluation of a sweep compares against, computed once (picklable)."""

    baseline: dict = field(default_factory=dict)  # the target's own scores before unlearning
    oracle_forget: torch.Tensor | None = None  # (N_f, V) oracle log-probs at the forget tokens
    facts: torch.Tensor | None = None  # (N_f,) bool: forget tokens the oracle does not predict


def completion_recall(output: str, reference: str) -> float:
    """ROUGE-L recall (RWKU convention) of the output's first line against the reference."""
    return metrics.rouge_l(output.split("\n", 1)[0], reference, "rwku")["recall"]


def probe_recall(model, tokenizer, collate, probes: list[dict], chat: bool, config, max_new_tokens: int) -> list[float]:
    """ROUGE-L recall of the greedy answer to each probe (``{"prompt", "answer", "qa"}``): a raw
    completion prompt as it is, a question wrapped as in training."""
    prompts = [collate.prompt_ids(prompt_text(p["prompt"], chat)) if p["qa"] else p["prompt"] for p in probes]
    outputs = inference.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, stop=COMPLETION_STOP,
                                 batch_size=config.batch_size, autocast=config.autocast)
    return [completion_recall(o, p["answer"]) for o, p in zip(outputs, probes)]


def _generation(model, tokenizer, collate, data: JsonlData, config, max_new_tokens: int) -> dict:
    qa = lambda split: [{"prompt": r["question"], "answer": r["answer"], "qa": True} for r in data._qa(split)]  # noqa: E731
    groups = {
        "forget_completion_rouge_l_recall": data.forget_probes(),
        "neighbor_completion_rouge_l_recall": [{"prompt": r["prompt"], "answer": r["completion"], "qa": False}
                                               for r in data.neighbor_completion],
        "forget_qa_rouge_l_recall": qa("forget"),
        "retain_qa_rouge_l_recall": qa("retain"),
    }
    groups = {name: common.first(probes, config.max_probes) for name, probes in groups.items()}
    groups = {name: probes for name, probes in groups.items() if probes}
    scores = probe_recall(model, tokenizer, collate, [p for ps in groups.values() for p in ps], data.chat, config,
                          max_new_tokens)
    out, start = {}, 0
    for name, probes in groups.items():
        put(out, name, scores[start:start + len(probes)])
        start += len(probes)
    return out


def mc_predictions(model, tokenizer, collate, items: list[dict], chat: bool, config) -> list[int]:
    """Per item, the index of the choice with the highest summed completion log-prob (first on ties)."""
    prompts, completions = [], []
    for item in items:
        prompt = collate.prompt_ids(prompt_text(item["question"], chat))
        for choice in item["choices"]:
            prompts.append(prompt)
            completions.append(choice if chat else f" {choice}")
    scores = inference.completion_logprobs(model, tokenizer, prompts, completions, batch_size=config.batch_size,
                                           autocast=config.autocast)
    out, start = [], 0
    for item in items:
        values = [s.logprob for s in scores[start:start + len(item["choices"])]]
        out.append(max(range(len(values)), key=values.__getitem__))
        start += len(values)
    return out


def _utility(model, tokenizer, collate, data: JsonlData, config) -> dict:
    items = common.first(data.utility_mc, config.max_probes)
    predicted = mc_predictions(model, tokenizer, collate, items, data.chat, config)
    out: dict = {}
    put(out, "utility_mc_accuracy", [float(p == item["answer"]) for p, item in zip(predicted, items)])
    return out


def _mia(model, tokenizer, data: JsonlData, config) -> dict:
    value, se = common.min_k_auc(model, tokenizer, data.forget, data.holdout, config)
    return {"mia_min_k_auc": value, "mia_min_k_auc_stderr": se}


def _kl(model, collate, data: JsonlData, refs: JsonlReferences, config) -> dict:
    ids, labels = common.kl_inputs(collate, data.forget_examples(), config.kl_max_tokens)
    log_model, _ = common.token_logprobs(model, ids, labels, config)
    return common.kl_metrics("", "oracle", "model", refs.oracle_forget, log_model, "forget", refs.facts)


def evaluate(model, tokenizer, collate, data: JsonlData, refs: JsonlReferences | None, config, parts: tuple,
             max_new_tokens: int = 32) -> dict:
    """Flat ``{metric: value, metric_stderr: value}`` for the requested parts (``verbmem`` is not
    part of this benchmark; a part whose file is absent, or ``kl`` without an oracle, is skipped)."""
    out: dict = {}
    if "generation" in parts:
        out.update(_generation(model, tokenizer, collate, data, config, max_new_tokens))
    if "utility" in parts and data.utility_mc:
        out.update(_utility(model, tokenizer, collate, data, config))
    if "mia" in parts and data.holdout:
        out.update(_mia(model, tokenizer, data, config))
    if "kl" in parts and refs is not None and refs.oracle_forget is not None:
        out.update(_kl(model, collate, data, refs, config))
    return out


def _metrics() -> tuple[Metric, ...]:
    m = [Metric("forget_completion_rouge_l_recall", "min", "forget", "ROUGE-L recall of forget completions"),
         Metric("neighbor_completion_rouge_l_recall", "max", "neighbour", "ROUGE-L recall of neighbour completions"),
         Metric("forget_qa_rouge_l_recall", "min", "forget", "ROUGE-L recall of forget QA answers"),
         Metric("retain_qa_rouge_l_recall", "max", "retain", "ROUGE-L recall of retain QA answers"),
         Metric("utility_mc_accuracy", "max", "utility", "multiple-choice accuracy (highest summed choice log-prob)"),
         Metric("mia_min_k_auc", 0.5, "privacy", "Min-K% (k=0.4) AUC, holdout = member-like vs forget")]
    for tokens in ("forget", "forget_facts"):
        for a, b in (("oracle", "model"), ("model", "oracle")):
            m.append(Metric(f"kl_{a}_{b}_{tokens}", "min", "kl", f"KL(p_{a} ‖ p_{b}) over {tokens} tokens"))
    return tuple(m)


# The seed paper's e-commerce figure: forget completion against neighbour completion, utility as marker size.
DECLARED = Declaration(
    needs_oracle=False, can_prepare=True,
    oracle_params=("path",),
    fronts=(Front("forget_completion_rouge_l_recall", "neighbor_completion_rouge_l_recall", size="utility_mc_accuracy"),
            Front("forget_qa_rouge_l_recall", "retain_qa_rouge_l_recall")),
    trajectories=("forget_completion_rouge_l_recall", "neighbor_completion_rouge_l_recall", "utility_mc_accuracy"),
    selection=Selection("forget_completion_rouge_l_recall", "neighbor_completion_rouge_l_recall",
                        oracle_tolerance=0.05, target_fraction=0.5,
                        floors={"neighbor_completion_rouge_l_recall": 0.5, "utility_mc_accuracy": 0.8}))
check_declaration("jsonl", _metrics(), DECLARED)


@dataclass(frozen=True)
class Jsonl:
    path: str
    max_new_tokens: int = 32
    chat: bool = False
    name: str = "jsonl"
    declared: Declaration = DECLARED

    def metrics(self, config=None) -> tuple[Metric, ...]:
        return _metrics()

    def _contents(self) -> dict[str, bytes]:
        source = Path(self.path)
        if not source.is_dir():
            raise ValueError(f"jsonl parameter 'path': {source} is not a directory "
                             f"(expected one holding {', '.join(n for n, (_, req) in FILES.items() if req)})")
        return {name: (source / name).read_bytes() for name in FILES if (source / name).is_file()}

    def _key(self, contents: dict[str, bytes]) -> str:
        blob = json.dumps({"format": FORMAT_VERSION, "chat": self.chat,
                           "files": {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def key(self) -> str:
        """Hash of the files' contents and ``chat``, what the data and a preparation depend on (not the
        path: a moved copy hits the cache; not ``max_new_tokens``: evaluation only)."""
        return self._key(self._contents())

    def materialize(self, cache: str | Path) -> JsonlData:
        """The files checked, copied under ``cache/jsonl-<key>`` (once, atomically), read back."""
        contents = self._contents()
        load(self.path)  # errors name the user's files, not the copies
        def write(tmp: Path) -> None:
            for name, data in contents.items():
                (tmp / name).write_bytes(data)

        return read(common.complete(Path(cache) / f"jsonl-{self._key(contents)}", write), self.chat)

    def read(self, root: str | Path) -> JsonlData:
        return read(root, self.chat)

    def references(self, target, oracle, tokenizer, collate, data: JsonlData, config) -> JsonlReferences:
        """The oracle's log-probs on the forget tokens (when there is an oracle) and the target's scores."""
        refs = JsonlReferences()
        if oracle is not None:
            ids, labels = common.kl_inputs(collate, data.forget_examples(), config.kl_max_tokens)
            refs.oracle_forget, y = common.token_logprobs(oracle, ids, labels, config)
            refs.facts = common.facts_mask(refs.oracle_forget, y, config.facts_threshold)
        refs.baseline = self.evaluate(target, tokenizer, collate, data, refs, config, config.parts)
        return refs

    def evaluate(self, model, tokenizer, collate, data: JsonlData, refs, config, parts: tuple) -> dict:
        return evaluate(model, tokenizer, collate, data, refs, config, parts, self.max_new_tokens)

    def recall(self, model, tokenizer, collate, data: JsonlData, probes: list[dict], config) -> list[float]:
        """Recall of the probes a preparation checks; ``config.max_new_tokens`` tokens, so that it does
        not depend on ``max_new_tokens``, which the preparation cache key leaves out."""
        return probe_recall(model, tokenizer, collate, probes, data.chat, config, config.max_new_tokens)


@register("jsonl")
def jsonl(path=None, max_new_tokens=32, chat=False, **unknown) -> Jsonl:
    if unknown:
        raise ValueError(f"unknown jsonl parameter {sorted(unknown)[0]!r}; allowed: {', '.join(PARAMS)}")
    check(isinstance(path, (str, os.PathLike)) and bool(str(path).strip()), "jsonl parameter 'path'",
          "a directory of JSONL files", path)
    check_int("jsonl parameter 'max_new_tokens'", max_new_tokens, 1)
    check(isinstance(chat, bool), "jsonl parameter 'chat'", "true or false", chat)
    return Jsonl(str(Path(path).expanduser().absolute()), max_new_tokens, chat)
