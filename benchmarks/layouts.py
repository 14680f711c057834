"""Schema-level loaders for the MUSE, RWKU, TOFU, WMDP and MMLU layouts (``docs/benchmarks/muse.md``,
``docs/benchmarks/rwku.md``, ``docs/benchmarks/tofu.md``, ``docs/benchmarks/wmdp.md``).

A local benchmark directory holds ``<root>/<config>/<split>.jsonl`` (or ``.parquet``); a hub
dataset id (``datasets.load_dataset(repo, config, split=split)``) maps onto the same configs and
splits. :func:`rows` reads either and checks that the split exists and that every row has the
fields of its schema with their types; older MUSE split names (``retain2_qa`` …) are accepted for
the current ones.
"""

from __future__ import annotations

import json
from pathlib import Path

from unlearn.validate import check

MUSE = {
    "raw": {"text": str},
    "train": {"text": str},
    "scal": {"text": str},
    "sust": {"text": str},
    "verbmem": {"prompt": str, "gt": str},
    "knowmem": {"question": str, "answer": str},
    "privleak": {"text": str},
}
MUSE_ALIASES = {"retain_qa": "retain2_qa", "retain_qa_icl": "retain2_qa_icl", "retain": "retain2"}

RWKU_PROBE = {"query": str, "answer": str, "level": str, "type": str, "subject": str}
RWKU = {
    "forget_target": {"target": str, "intro": str},
    "forget_level1": RWKU_PROBE,
    "forget_level2": RWKU_PROBE,
    "forget_level3": RWKU_PROBE,
    "neighbor_level1": {**RWKU_PROBE, "neighbor": str},
    "neighbor_level2": {**RWKU_PROBE, "neighbor": str},
    "mia_forget": {"text": str, "subject": str},
    "mia_retain": {"text": str, "subject": str},
    "utility_general": {"question": str, "choices": list, "answer": int, "examples": list, "task": str,
                        "subject": str},
    "utility_reason": {"task": str, "cot": str, "question": str, "answer": str, "subject": str},
    "utility_truthfulness": {"question": str, "mc1_targets": dict, "mc2_targets": dict, "subject": str},
    "utility_factuality": {"question": str, "answers": list, "subject": str},
    "utility_fluency": {"instruction": str, "subject": str},
    "train_positive_llama3": {"text": str, "subject": str},
}
TOFU_QA = {"question": str, "answer": str}
TOFU_PERTURBED = {"question": str, "answer": str, "paraphrased_answer": str, "paraphrased_question": str,
                  "perturbed_answer": list}
TOFU_OPTIONS = {"question": str, "option1": str, "option2": str, "option3": str, "option4": str, "answer": str}
TOFU = {
    "full": TOFU_QA,
    **{f"forget{n}": TOFU_QA for n in ("01", "05", "10")},
    **{f"retain{n}": TOFU_QA for n in ("99", "95", "90")},
    **{f"holdout{n}": TOFU_QA for n in ("01", "05", "10")},
    **{f"forget{n}_perturbed": TOFU_PERTURBED for n in ("01", "05", "10")},
    "retain_perturbed": TOFU_PERTURBED,
    "real_authors": TOFU_OPTIONS,
    "world_facts": TOFU_OPTIONS,
    "real_authors_perturbed": {"question": str, "answer": str, "perturbed_answer": list},
    "world_facts_perturbed": {"question": str, "answer": str, "perturbed_answer": list},
}
MULTIPLE_CHOICE = {"question": str, "choices": list, "answer": int}
WMDP = {"wmdp-bio": MULTIPLE_CHOICE, "wmdp-cyber": MULTIPLE_CHOICE, "wmdp-chem": MULTIPLE_CHOICE}  # cais/wmdp
MMLU_SUBJECTS = (  # the per-subject configs of cais/mmlu
    "abstract_algebra", "anatomy", "astronomy", "business_ethics", "clinical_knowledge", "college_biology",
    "college_chemistry", "college_computer_science", "college_mathematics", "college_medicine", "college_physics",
    "computer_security", "conceptual_physics", "econometrics", "electrical_engineering", "elementary_mathematics",
    "formal_logic", "global_facts", "high_school_biology", "high_school_chemistry", "high_school_computer_science",
    "high_school_european_history", "high_school_geography", "high_school_government_and_politics",
    "high_school_macroeconomics", "high_school_mathematics", "high_school_microeconomics", "high_school_physics",
    "high_school_psychology", "high_school_statistics", "high_school_us_history", "high_school_world_history",
    "human_aging", "human_sexuality", "international_law", "jurisprudence", "logical_fallacies", "machine_learning",
    "management", "marketing", "medical_genetics", "miscellaneous", "moral_disputes", "moral_scenarios", "nutrition",
    "philosophy", "prehistory", "professional_accounting", "professional_law", "professional_medicine",
    "professional_psychology", "public_relations", "security_studies", "sociology", "us_foreign_policy", "virology",
    "world_religions")
MMLU = {subject: {**MULTIPLE_CHOICE, "subject": str} for subject in MMLU_SUBJECTS}
SCHEMAS = {"muse": MUSE, "rwku": RWKU, "tofu": TOFU, "wmdp": WMDP, "mmlu": MMLU}
TYPE_NAMES = {str: "string", int: "integer", list: "list", dict: "object"}


def describe(fields: dict) -> str:
    """``{"text": str}`` -> ``"text (string)"``: the expected schema, for error messages."""
    return ", ".join(f"{name} ({TYPE_NAMES[kind]})" for name, kind in fields.items())


def _is(value, kind) -> bool:
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool) or (
            hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu")
    if kind is list:
        return isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and hasattr(value, "ndim"))
    return isinstance(value, kind)


def check_rows(rows: list[dict], layout: str, config: str, where: str) -> list[dict]:
    """Rows after the schema check: every field present with its type (one-line ``ValueError``
    naming ``where``, the row, the field and the expected schema otherwise)."""
    schema = SCHEMAS[layout][config]
    for number, row in enumerate(rows, 1):
        # RWKU documents sometimes name the subject "target": accept both.
        if "subject" in schema and "subject" not in row and "target" in row:
            row["subject"] = row["target"]
        for name, kind in schema.items():
            if name not in row:
                raise ValueError(f"{where}: row {number} lacks field {name!r} "
                                 f"(the {layout} {config} schema: {describe(schema)})")
            if not _is(row[name], kind):
                raise ValueError(f"{where}: row {number} field {name!r} is {type(row[name]).__name__}, expected "
                                 f"{TYPE_NAMES[kind]} (the {layout} {config} schema: {describe(schema)})")
    return rows


def _check_config(layout: str, config: str) -> None:
    check(layout in SCHEMAS, "layout", f"one of {', '.join(SCHEMAS)}", layout)
    if config not in SCHEMAS[layout]:
        raise ValueError(f"config {config!r} is not part of the {layout} layout; "
                         f"known: {', '.join(SCHEMAS[layout])}")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pandas as pd

        return pd.read_parquet(path).to_dict("records")
    rows = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: each line must be a JSON object")
            rows.append(row)
    return rows


def _split_file(root: Path, config: str, split: str) -> Path:
    folder = root / config
    for name in (split, MUSE_ALIASES.get(split), _reverse_alias(split)):
        for suffix in (".jsonl", ".parquet"):
            if name and (folder / f"{name}{suffix}").is_file():
                return folder / f"{name}{suffix}"
    present = sorted(p.stem for p in folder.glob("*.*")) if folder.is_dir() else []
    raise ValueError(f"split {split!r} of config {config!r} not found under {root}; "
                     f"present: {', '.join(present) or 'none'}")


def _reverse_alias(split: str) -> str | None:
    return next((new for new, old in MUSE_ALIASES.items() if old == split), None)


def load(root: str | Path, layout: str, config: str, split: str) -> list[dict]:
    """Rows of one split of a local directory, checked against the layout's schema."""
    _check_config(layout, config)
    path = _split_file(Path(root), config, split)
    return check_rows(read_jsonl(path), layout, config, str(path))


def hub_rows(repo: str, config: str, split: str) -> list[dict]:
    """One split of a Hugging Face dataset, as plain rows (older MUSE split names accepted)."""
    import datasets

    names = [n for n in (split, MUSE_ALIASES.get(split), _reverse_alias(split)) if n]
    for name in names:
        try:
            return [dict(row) for row in datasets.load_dataset(repo, config, split=name)]
        except ValueError as error:  # an unknown split: try the other name
            if "split" not in str(error).lower() or name == names[-1]:
                raise ValueError(f"{repo}: config {config!r} split {split!r}: {error}") from None
    raise AssertionError("unreachable")


def rows(source: str | Path, layout: str, config: str, split: str) -> list[dict]:
    """Rows of ``config``/``split`` from ``source`` — a local directory in the layout, or a hub
    dataset id (``muse-bench/MUSE-News``) — through the same schema check either way."""
    _check_config(layout, config)
    if Path(source).expanduser().is_dir():
        return load(Path(source).expanduser(), layout, config, split)
    return check_rows(hub_rows(str(source), config, split), layout, config, f"{source} {config}/{split}")


def write(root: str | Path, layout: str, config: str, split: str, rows: list[dict]) -> Path:
    """Write one split after checking its rows against the schema (the loaders read it back)."""
    _check_config(layout, config)
    check_rows(rows, layout, config, f"{layout}/{config}/{split}")
    path = Path(root) / config / f"{split}.jsonl"
    write_jsonl(path, rows)
    return path
