"""Preparation of a benchmark's target and oracle from any base model, for every benchmark that
declares ``can_prepare`` (the synthetic one, a user's own ``jsonl`` data).

The *target* is the base model fine-tuned on the benchmark's whole training corpus (forget ∪
retain …); the *oracle* ("retrained") is the same base fine-tuned with the same recipe without the
forget set. Each trains until the recall of its check probes (``data.check_probes``, scored by
``benchmark.recall``) reaches ``recipe.stop_recall`` (or ``max_epochs``). Results are cached under a key
of (base model, benchmark parameters, recipe); every weight file's SHA-256 is recorded, so a
corrupted cache is detected and rebuilt, never loaded silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from benchmarks.common import atomic_dir, default_cache
from unlearn.validate import check, check_int, check_number, is_number

CACHE_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    lr: float = 3e-4
    max_epochs: int = 8
    micro_batch: int = 8
    stop_recall: float = 0.85  # trained-QA ROUGE-L recall that counts as "learned"
    check_probes: int = 40  # trained questions generated after each epoch to check that
    warmup_steps: int = 5
    seed: int = 0
    autocast: bool = False  # bf16 autocast on CPU (fp32 master weights)
    max_length: int = 256

    def __post_init__(self):
        check_number("recipe.lr", self.lr, strict=True)
        for name in ("max_epochs", "micro_batch", "check_probes", "max_length"):
            check_int(f"recipe.{name}", getattr(self, name), 1)
        check(is_number(self.stop_recall) and 0 < self.stop_recall <= 1, "recipe.stop_recall", "a number in (0, 1]",
              self.stop_recall)


@dataclass(frozen=True)
class Prepared:
    target: Path
    oracle: Path
    meta: dict
    data: Any


def _model_identity(base: str) -> dict:
    path = Path(base).expanduser()
    if base == "tiny" or not path.exists():
        return {"model": base}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {"model": str(path.resolve()),
            "files": [[str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns]
                      for p in files]}


def cache_key(base: str, benchmark, recipe: Recipe) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "base": _model_identity(base), "benchmark": benchmark.key(),
                       "recipe": dataclasses.asdict(recipe)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hashes(root: Path) -> dict:
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "meta.json"}


def verify(root: Path) -> str | None:
    """None when the cached preparation is intact, else what is wrong."""
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        return "meta.json is missing (an interrupted preparation)"
    try:
        expected = json.loads(meta_path.read_text())["sha256"]
    except (ValueError, KeyError):
        return "meta.json is unreadable"
    actual = _hashes(root)
    for name, digest in expected.items():
        if actual.get(name) != digest:
            return f"{name} does not match its recorded SHA-256"
    return None


def _say(message: str) -> None:
    print(f"[prepare] {message}", file=sys.stderr, flush=True)


def check_can_prepare(benchmark) -> None:
    if not benchmark.declared.can_prepare:
        raise ValueError(f"benchmark {benchmark.name!r} cannot prepare a target and an oracle from a base model "
                         f"(it comes with its own); give model.target (and model.oracle) instead of model.base")


def prepare(base: str, benchmark, recipe: Recipe = Recipe(), *, cache: Path | None = None,
            progress: Callable[[str], None] = _say) -> Prepared:
    """Target and oracle for ``benchmark`` from ``base`` (cached; rebuilt when the cache is damaged)."""
    check_can_prepare(benchmark)
    cache = Path(cache) if cache else default_cache()
    data = benchmark.materialize(cache / "benchmarks")
    root = cache / "prepared" / cache_key(base, benchmark, recipe)
    problem = verify(root) if root.exists() else "not prepared yet"
    if problem is None:
        meta = json.loads((root / "meta.json").read_text())
        progress(f"reusing {root} (target forget recall {meta['target']['forget_recall']:.2f}, "
                 f"oracle {meta['oracle']['forget_recall']:.2f})")
        return Prepared(root / "target", root / "oracle", meta, data)
    if root.exists():
        progress(f"cache at {root} is damaged ({problem}); rebuilding")
    with atomic_dir(root) as tmp:
        meta = _build(base, benchmark, recipe, data, tmp, progress)
        meta["sha256"] = _hashes(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return Prepared(root / "target", root / "oracle", meta, data)


def _build(base: str, benchmark, recipe: Recipe, data, out: Path, progress) -> dict:
    import copy

    from unlearn import models

    start = time.time()
    model, tokenizer = models.load_model(base, texts=data.corpus_texts() if base == "tiny" else None)
    progress(f"loaded {base} in {time.time() - start:.1f}s")
    meta = {"base": base, "benchmark": benchmark.name, "benchmark_key": benchmark.key(),
            "recipe": dataclasses.asdict(recipe)}
    from_scratch = base == "tiny"  # general knowledge must then be taught to both models alike
    for role in ("target", "oracle"):
        student = copy.deepcopy(model) if role == "target" else model
        meta[role] = _train(student, tokenizer, benchmark, data, recipe, with_forget=role == "target",
                            utility=from_scratch, progress=lambda m, r=role: progress(f"{r}: {m}"))
        models.save_model(student, tokenizer, out / role)
        del student
    meta["seconds"] = round(time.time() - start, 1)
    progress(f"done in {meta['seconds']}s: target forget recall {meta['target']['forget_recall']:.2f}, "
             f"oracle forget recall {meta['oracle']['forget_recall']:.2f}")
    return meta


def _train(model, tokenizer, benchmark, data, recipe: Recipe, *, with_forget: bool, utility: bool, progress) -> dict:
    import torch

    from benchmarks.common import EvalConfig
    from unlearn import data as collation
    from unlearn import engine, finetune, loop, schedule

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    collate = collation.Collator(tokenizer, max_length=recipe.max_length, chat_template=data.chat)
    examples = data.train_examples(with_forget=with_forget, utility=utility)
    check = data.check_probes(with_forget=with_forget)
    check = [check[i] for i in range(0, len(check), max(1, len(check) // recipe.check_probes))][:recipe.check_probes]
    config = loop.LoopConfig(epochs=1, micro_batch=recipe.micro_batch, seed=recipe.seed, group_by_length=True)
    total = loop.total_steps(len(examples), config, recipe.micro_batch) * recipe.max_epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, fused=True)
    plain = engine.PlainEngine(model, optimizer, scheduler=schedule.scheduler(
        optimizer, "constant", total, min(recipe.warmup_steps, total)), max_grad_norm=1.0)
    eval_config = EvalConfig(autocast=recipe.autocast)

    def mean(probes) -> float:
        return sum(benchmark.recall(model, tokenizer, collate, data, probes, eval_config)) / max(1, len(probes))

    recall, epoch = 0.0, 0
    for epoch in range(1, recipe.max_epochs + 1):
        began, losses_seen = time.time(), []
        run_config = dataclasses.replace(config, seed=recipe.seed + epoch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.autocast):
            finetune.finetune(plain, examples, collate, run_config, device=device,
                              report=lambda m, seen=losses_seen: seen.append(m["loss"]))
        recall = mean(check)
        progress(f"epoch {epoch}/{recipe.max_epochs}: loss {losses_seen[-1]:.3f}, trained recall {recall:.2f} "
                 f"({time.time() - began:.0f}s)")
        if recall >= recipe.stop_recall:
            break
    model.eval()
    return {"epochs": epoch, "trained_recall": recall, "forget_recall": mean(data.forget_probes()),
            "examples": len(examples)}
