"""A bring-your-own benchmark from a directory of JSONL files, in the shape of the seed paper's
e-commerce task (BENCHMARKS.md, intro): forget a seller's listings, score forget and neighbour
completions by ROUGE-L recall and general ability by multiple choice. Layout and usage:
``docs/byo-benchmark.md``.

``benchmarks.get("jsonl", path=..., undial_gammas=..., max_new_tokens=32, chat=False)`` →
:class:`Jsonl`; ``.materialize(cache)`` checks every file and copies them into
``cache/jsonl-<key>/`` (key = hash of the files' contents and the parameters), read back into
:class:`JsonlData`. The source directory is only read by ``key`` and ``materialize``; workers
``read`` the cached copy.

Metrics (every value with ``<name>_stderr``):
- ``jsonl_forget_completion`` / ``jsonl_neighbor_completion``: ROUGE-L recall (the ``rouge``
  package's, RWKU convention) of the greedy continuation of each raw-text ``prompt`` (BOS added,
  never chat-templated: the forget texts are trained as raw text), cut at the first newline,
  against ``completion``; ``jsonl_forget_qa`` / ``jsonl_retain_qa`` the same for ``qa.jsonl``
  questions, wrapped as the synthetic benchmark wraps them (``Question: …\\nAnswer:``, or the chat
  template with ``chat``);
- ``jsonl_utility_mc``: accuracy, the predicted choice being the one with the highest summed
  log-prob as a completion of the wrapped question (no letters, any number of choices);
- ``jsonl_mia_min_k_auc``: Min-K% (k = ``mia_k``, 0.4) AUC = P(a ``holdout.jsonl`` text looks
  more member-like than a forget text), MUSE's PrivLeak AUC; only with a holdout file;
- ``jsonl_kl_oracle_model_forget`` / ``jsonl_kl_model_oracle_forget`` (and ``…_forget_facts``,
  the forget tokens the oracle gives p < 0.05): token-mean KL on the forget texts, only when
  ``references`` got an oracle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import layouts
from benchmarks.spec import Metric, register
from benchmarks.synthetic import prompt_text

if TYPE_CHECKING:
    import torch

FORMAT_VERSION = 1
UNDIAL_GAMMAS = (3.0, 10.0, 30.0)
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
PARAMS = ("path", "undial_gammas", "max_new_tokens", "chat")
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
            out[name] = check_rows(layouts._read_rows(path), name, str(path))
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

    @property
    def mia(self) -> dict:
        """The texts ``benchmarks.evaluate.mia_auc`` compares."""
        return {"forget": self.forget, "holdout": self.holdout}


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
    npo_ref_nll: torch.Tensor | None = None  # NPO's NLL_ref per forget example (set by the sweep)
    oracle_forget: torch.Tensor | None = None  # (N_f, V) oracle log-probs at the forget tokens
    facts: torch.Tensor | None = None  # (N_f,) bool: forget tokens the oracle does not predict


def completion_recall(output: str, reference: str) -> float:
    """ROUGE-L recall (RWKU convention) of the output's first line against the reference."""
    from benchmarks import metrics

    return metrics.rouge_l(output.split("\n", 1)[0], reference, "rwku")["recall"]


def _put(out: dict, name: str, values) -> None:
    from benchmarks import metrics

    out[name], out[f"{name}_stderr"] = metrics.mean_and_stderr(values)


def _generation(model, tokenizer, collate, data: JsonlData, config, max_new_tokens: int) -> dict:
    from benchmarks import inference

    qa = lambda split: [(collate.prompt_ids(prompt_text(r["question"], data.chat)), r["answer"])  # noqa: E731
                        for r in data.qa if r["split"] == split]
    groups = {
        "jsonl_forget_completion": [(r["prompt"], r["completion"]) for r in data.forget_completion],
        "jsonl_neighbor_completion": [(r["prompt"], r["completion"]) for r in data.neighbor_completion],
        "jsonl_forget_qa": qa("forget"),
        "jsonl_retain_qa": qa("retain"),
    }
    groups = {name: pairs[:config.max_probes] for name, pairs in groups.items()}
    groups = {name: pairs for name, pairs in groups.items() if pairs}
    flat = [pair for pairs in groups.values() for pair in pairs]
    outputs = inference.generate(model, tokenizer, [prompt for prompt, _ in flat], max_new_tokens=max_new_tokens,
                                 stop=COMPLETION_STOP, batch_size=config.batch_size, autocast=config.autocast)
    scores = [completion_recall(o, reference) for o, (_, reference) in zip(outputs, flat)]
    out, start = {}, 0
    for name, pairs in groups.items():
        _put(out, name, scores[start:start + len(pairs)])
        start += len(pairs)
    return out


def mc_predictions(model, tokenizer, collate, items: list[dict], chat: bool, config) -> list[int]:
    """Per item, the index of the choice with the highest summed completion log-prob (first on ties)."""
    from benchmarks import inference

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
    items = data.utility_mc[:config.max_probes]
    predicted = mc_predictions(model, tokenizer, collate, items, data.chat, config)
    out: dict = {}
    _put(out, "jsonl_utility_mc", [float(p == item["answer"]) for p, item in zip(predicted, items)])
    return out


def _mia(model, tokenizer, data: JsonlData, config) -> dict:
    from benchmarks import evaluate as ev

    value, se = ev.mia_auc(model, tokenizer, data, config)
    return {"jsonl_mia_min_k_auc": value, "jsonl_mia_min_k_auc_stderr": se}


def _kl(model, collate, data: JsonlData, refs: JsonlReferences, config) -> dict:
    from benchmarks import evaluate as ev

    ids, labels = ev.kl_inputs(collate, data.forget_examples(), config.kl_max_tokens)
    log_model, _ = ev.token_logprobs(model, ids, labels, config)
    facts = refs.facts if bool(refs.facts.any()) else None  # no such token: leave the _facts metrics out
    return ev.kl_metrics("jsonl_", "oracle", "model", refs.oracle_forget, log_model, "forget", facts)


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
    m = [Metric("jsonl_forget_completion", "min", "ROUGE-L recall of forget completions"),
         Metric("jsonl_neighbor_completion", "max", "ROUGE-L recall of neighbour completions"),
         Metric("jsonl_forget_qa", "min", "ROUGE-L recall of forget QA answers"),
         Metric("jsonl_retain_qa", "max", "ROUGE-L recall of retain QA answers"),
         Metric("jsonl_utility_mc", "max", "multiple-choice accuracy (highest summed choice log-prob)"),
         Metric("jsonl_mia_min_k_auc", 0.5, "Min-K% (k=0.4) AUC, holdout = member-like vs forget")]
    for tokens in ("forget", "forget_facts"):
        for a, b in (("oracle", "model"), ("model", "oracle")):
            m.append(Metric(f"jsonl_kl_{a}_{b}_{tokens}", "min", f"KL(p_{a} ‖ p_{b}) over {tokens} tokens"))
    return tuple(m)


@dataclass(frozen=True)
class Jsonl:
    path: str
    undial_gammas: tuple = UNDIAL_GAMMAS
    max_new_tokens: int = 32
    chat: bool = False
    name: str = "jsonl"

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return _metrics()

    def _contents(self) -> dict[str, bytes]:
        source = Path(self.path)
        if not source.is_dir():
            raise ValueError(f"jsonl parameter 'path': {source} is not a directory "
                             f"(expected one holding {', '.join(n for n, (_, req) in FILES.items() if req)})")
        return {name: (source / name).read_bytes() for name in FILES if (source / name).is_file()}

    def _key(self, contents: dict[str, bytes]) -> str:
        blob = json.dumps({"format": FORMAT_VERSION, "chat": self.chat, "max_new_tokens": self.max_new_tokens,
                           "undial_gammas": list(self.undial_gammas),
                           "files": {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}},
                          sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def key(self) -> str:
        """Hash of the files' contents and the parameters (not of the path: a moved copy hits the cache)."""
        return self._key(self._contents())

    def materialize(self, cache: str | Path) -> JsonlData:
        """The files checked, copied under ``cache/jsonl-<key>`` (once, atomically), read back."""
        contents = self._contents()
        load(self.path)  # errors name the user's files, not the copies
        root = Path(cache) / f"jsonl-{self._key(contents)}"
        if not (root / "COMPLETE").is_file():
            root.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".jsonl-", dir=root.parent))
            for name, data in contents.items():
                (tmp / name).write_bytes(data)
            (tmp / "COMPLETE").write_text("")
            shutil.rmtree(root, ignore_errors=True)
            os.replace(tmp, root)
        return read(root, self.chat)

    def read(self, root: str | Path) -> JsonlData:
        return read(root, self.chat)

    def references(self, target, oracle, tokenizer, collate, data: JsonlData, config) -> JsonlReferences:
        """The oracle's log-probs on the forget tokens (when there is an oracle) and the target's scores."""
        from benchmarks import evaluate as ev

        refs = JsonlReferences()
        if oracle is not None:
            ids, labels = ev.kl_inputs(collate, data.forget_examples(), config.kl_max_tokens)
            refs.oracle_forget, y = ev.token_logprobs(oracle, ids, labels, config)
            refs.facts = refs.oracle_forget.gather(-1, y[:, None]).squeeze(-1).exp() < config.facts_threshold
        refs.baseline = self.evaluate(target, tokenizer, collate, data, refs, config, config.parts)
        return refs

    def evaluate(self, model, tokenizer, collate, data: JsonlData, refs, config, parts: tuple) -> dict:
        return evaluate(model, tokenizer, collate, data, refs, config, parts, self.max_new_tokens)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@register("jsonl")
def jsonl(path=None, undial_gammas=UNDIAL_GAMMAS, max_new_tokens=32, chat=False, **unknown) -> Jsonl:
    if unknown:
        raise ValueError(f"unknown jsonl parameter {sorted(unknown)[0]!r}; allowed: {', '.join(PARAMS)}")
    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise ValueError(f"jsonl parameter 'path' must name a directory of JSONL files; got {path!r}")
    if (not isinstance(undial_gammas, (list, tuple)) or not undial_gammas
            or not all(_is_number(g) and g > 0 for g in undial_gammas)):
        raise ValueError(f"jsonl parameter 'undial_gammas' must be a non-empty list of numbers > 0; "
                         f"got {undial_gammas!r}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"jsonl parameter 'max_new_tokens' must be an integer >= 1; got {max_new_tokens!r}")
    if not isinstance(chat, bool):
        raise ValueError(f"jsonl parameter 'chat' must be true or false; got {chat!r}")
    return Jsonl(str(Path(path).expanduser().absolute()), tuple(float(g) for g in undial_gammas), max_new_tokens, chat)
