"""Schema-level loaders for the MUSE and RWKU layouts (BENCHMARKS.md §2, §3).

A local benchmark directory holds ``<root>/<config>/<split>.jsonl`` (or ``.parquet``). Loading
checks that the split exists and that every row has the fields of its schema; older MUSE split
names (``retain2_qa`` …) are accepted for the current ones. The hub datasets map onto the same
configs and splits (``datasets.load_dataset(repo, config, split=split)``).
"""

from __future__ import annotations

import json
from pathlib import Path

MUSE = {
    "raw": ("text",),
    "train": ("text",),
    "verbmem": ("prompt", "gt"),
    "knowmem": ("question", "answer"),
    "privleak": ("text",),
}
MUSE_ALIASES = {"retain_qa": "retain2_qa", "retain_qa_icl": "retain2_qa_icl", "retain": "retain2"}

RWKU_PROBE = ("query", "answer", "level", "type", "subject")
RWKU = {
    "forget_target": ("target", "intro"),
    "forget_level1": RWKU_PROBE,
    "forget_level2": RWKU_PROBE,
    "forget_level3": RWKU_PROBE,
    "neighbor_level1": RWKU_PROBE + ("neighbor",),
    "neighbor_level2": RWKU_PROBE + ("neighbor",),
    "mia_forget": ("text", "subject"),
    "mia_retain": ("text", "subject"),
    "utility_general": ("question", "choices", "answer", "examples", "task", "subject"),
    "utility_factuality": ("question", "answers", "subject"),
    "train_positive_llama3": ("text", "subject"),
}
SCHEMAS = {"muse": MUSE, "rwku": RWKU}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def _read_rows(path: Path) -> list[dict]:
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
    """Rows of one split, checked against the layout's schema."""
    if layout not in SCHEMAS:
        raise ValueError(f"layout must be one of {', '.join(SCHEMAS)}; got {layout!r}")
    schema = SCHEMAS[layout]
    if config not in schema:
        raise ValueError(f"config {config!r} is not part of the {layout} layout; "
                         f"known: {', '.join(schema)}")
    path = _split_file(Path(root), config, split)
    rows = _read_rows(path)
    # RWKU documents sometimes name the subject "target": accept both.
    for row in rows:
        if "subject" in schema[config] and "subject" not in row and "target" in row:
            row["subject"] = row["target"]
    for number, row in enumerate(rows, 1):
        missing = [f for f in schema[config] if f not in row]
        if missing:
            raise ValueError(f"{path}: row {number} lacks field {missing[0]!r} "
                             f"(the {layout} {config} schema needs {', '.join(schema[config])})")
    return rows


def write(root: str | Path, layout: str, config: str, split: str, rows: list[dict]) -> Path:
    """Write one split after checking its rows against the schema (the loaders read it back)."""
    fields = SCHEMAS[layout][config]
    for number, row in enumerate(rows, 1):
        missing = [f for f in fields if f not in row]
        if missing:
            raise ValueError(f"{layout}/{config}/{split}: row {number} lacks field {missing[0]!r}")
    path = Path(root) / config / f"{split}.jsonl"
    write_jsonl(path, rows)
    return path
