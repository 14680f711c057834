"""Preparation of the synthetic benchmark's models from any base model.

The *target* is the base model fine-tuned on forget ∪ retain ∪ neighbours; the *oracle* ("retrained")
is the same base fine-tuned with the same recipe without the forget people. Each trains until its
trained-QA recall reaches ``recipe.stop_recall`` (or ``max_epochs``). Results are cached under a key
of (base model, benchmark parameters, recipe); every weight file's SHA-256 is recorded, so a
corrupted cache is detected and rebuilt, never loaded silently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from benchmarks.synthetic import Synthetic, SyntheticData

CACHE_VERSION = 1


def default_cache() -> Path:
    return Path(os.environ.get("UNLEARN_CACHE", Path.home() / ".cache" / "unlearn-sweeps"))


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
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ValueError(f"recipe.lr must be a number > 0; got {self.lr!r}")
        for name in ("max_epochs", "micro_batch", "check_probes", "max_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"recipe.{name} must be an integer >= 1; got {getattr(self, name)!r}")
        if not 0 < self.stop_recall <= 1:
            raise ValueError(f"recipe.stop_recall must be in (0, 1]; got {self.stop_recall!r}")


@dataclass(frozen=True)
class Prepared:
    target: Path
    oracle: Path
    meta: dict
    data: SyntheticData


def _model_identity(base: str) -> dict:
    path = Path(base).expanduser()
    if base == "tiny" or not path.exists():
        return {"model": base}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {"model": str(path.resolve()),
            "files": [[str(p.relative_to(path) if path.is_dir() else p.name), p.stat().st_size, p.stat().st_mtime_ns]
                      for p in files]}


def cache_key(base: str, bench: Synthetic, recipe: Recipe) -> str:
    blob = json.dumps({"v": CACHE_VERSION, "base": _model_identity(base), "benchmark": bench.key(),
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


def prepare(base: str, bench: Synthetic, recipe: Recipe = Recipe(), *, cache: Path | None = None,
            progress: Callable[[str], None] = _say) -> Prepared:
    """Target and oracle for ``bench`` from ``base`` (cached; rebuilt when the cache is damaged)."""
    cache = Path(cache) if cache else default_cache()
    data = bench.materialize(cache / "benchmarks")
    root = cache / "prepared" / cache_key(base, bench, recipe)
    problem = verify(root) if root.exists() else "not prepared yet"
    if problem is None:
        meta = json.loads((root / "meta.json").read_text())
        progress(f"reusing {root} (target forget-QA {meta['target']['forget_qa']:.2f}, "
                 f"oracle {meta['oracle']['forget_qa']:.2f})")
        return Prepared(root / "target", root / "oracle", meta, data)
    if root.exists():
        progress(f"cache at {root} is damaged ({problem}); rebuilding")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".prepare-", dir=root.parent))
    try:
        meta = _build(base, bench, recipe, data, tmp, progress)
        meta["sha256"] = _hashes(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
        shutil.rmtree(root, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Prepared(root / "target", root / "oracle", meta, data)


def _corpus_texts(data: SyntheticData) -> list[str]:
    """Everything the tiny preset's tokenizer is trained on (so every probe is in-vocabulary)."""
    texts = [t for split in data.texts.values() for t in split]
    texts += [f"{r['question']} {r['answer']}" for rows in data.qa.values() for r in rows]
    texts += [f"{p.question} {p.answer}" for group in data.probes.values() for p in group]
    return texts


def _build(base: str, bench: Synthetic, recipe: Recipe, data: SyntheticData, out: Path, progress) -> dict:
    import copy

    from unlearn import models

    start = time.time()
    model, tokenizer = models.load_model(base, texts=_corpus_texts(data) if base == "tiny" else None)
    progress(f"loaded {base} in {time.time() - start:.1f}s")
    meta = {"base": base, "benchmark": dataclasses.asdict(bench.params), "recipe": dataclasses.asdict(recipe)}
    from_scratch = base == "tiny"  # general knowledge must then be taught to both models alike
    for role in ("target", "oracle"):
        student = copy.deepcopy(model) if role == "target" else model
        meta[role] = _train(student, tokenizer, data, recipe, with_forget=role == "target",
                            utility=from_scratch, progress=lambda m, r=role: progress(f"{r}: {m}"))
        models.save_model(student, tokenizer, out / role)
        del student
    meta["seconds"] = round(time.time() - start, 1)
    progress(f"done in {meta['seconds']}s: target forget-QA {meta['target']['forget_qa']:.2f}, "
             f"oracle forget-QA {meta['oracle']['forget_qa']:.2f}")
    return meta


def _train(model, tokenizer, data: SyntheticData, recipe: Recipe, *, with_forget: bool, utility: bool,
           progress) -> dict:
    import torch

    from benchmarks.evaluate import EvalConfig, qa_recall
    from unlearn import data as collation, engine, finetune, loop, schedule

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device)
    collate = collation.Collator(tokenizer, max_length=recipe.max_length, chat_template=data.chat)
    examples = data.train_examples(with_forget=with_forget, utility=utility)
    check = (data.probes["forget_qa"] if with_forget else []) + data.probes["retain_qa"]
    check = [check[i] for i in range(0, len(check), max(1, len(check) // recipe.check_probes))][:recipe.check_probes]
    config = loop.LoopConfig(epochs=1, micro_batch=recipe.micro_batch, seed=recipe.seed)
    total = loop.total_steps(len(examples), config, recipe.micro_batch) * recipe.max_epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr)
    plain = engine.PlainEngine(model, optimizer, scheduler=schedule.scheduler(
        optimizer, "constant", total, min(recipe.warmup_steps, total)), max_grad_norm=1.0)
    eval_config = EvalConfig(autocast=recipe.autocast)
    recall, epoch = 0.0, 0
    for epoch in range(1, recipe.max_epochs + 1):
        began, losses_seen = time.time(), []
        run_config = dataclasses.replace(config, seed=recipe.seed + epoch)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.autocast):
            finetune.finetune(plain, examples, collate, run_config, device=device,
                              report=lambda m: losses_seen.append(m["loss"]))
        recall = sum(qa_recall(model, tokenizer, collate, check, data.chat, eval_config)) / max(1, len(check))
        progress(f"epoch {epoch}/{recipe.max_epochs}: loss {losses_seen[-1]:.3f}, trained-QA recall {recall:.2f} "
                 f"({time.time() - began:.0f}s)")
        if recall >= recipe.stop_recall:
            break
    model.eval()
    forget_qa = sum(qa_recall(model, tokenizer, collate, data.probes["forget_qa"], data.chat, eval_config))
    return {"epochs": epoch, "trained_qa_recall": recall,
            "forget_qa": forget_qa / max(1, len(data.probes["forget_qa"])), "examples": len(examples)}
