"""The synthetic benchmark's general-knowledge multiple choice on SmolLM2-135M-Instruct: the base
model, and the demo's prepared target and oracle (``sweeps/specs/demo.yaml``'s ``model.prepare``
and benchmark parameters, prepared as ``unlearn demo`` does and cached the same way).

For each model every option of every question is scored once (its per-token log-probs given the
question, wrapped as the training QA pairs); from those, accuracy and the probability of the right
option under both option scores: the sum of the token log-probs and their mean (length-normalised).
Also: on the questions whose options differ in token count, how often each score picks the option
with the uniquely fewest / most tokens (and how often that one is right); how often two models give
the same answer question by question (target and oracle differ only by the forget people, so a
stable score should rarely tell them apart); the teacher-forced answer probabilities of the QA
groups; how long the multiple choice and the answer probabilities take as the demo's evaluation runs
them; and how long the scores would take if each question's prompt were computed once for its four
options. Numbers go to ``perf/results/utility_mc.json``.

    .venv/bin/python perf/utility_mc.py    # minutes on 2 CPU cores when the demo's models are prepared
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a script without installing the repository

import record  # noqa: E402  (perf/record.py, beside this file)
import yaml  # noqa: E402

from benchmarks import metrics  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "utility_mc.json"
DEMO = ROOT / "sweeps" / "specs" / "demo.yaml"


def _round(values: tuple[float, float]) -> dict:
    return {"mean": round(values[0], 4), "stderr": round(values[1], 4)}


def _picks(per_item: list, normalised: bool) -> list[int]:
    out = []
    for lps in per_item:
        scores = [float(lp.mean() if normalised else lp.sum()) for lp in lps]
        out.append(max(range(len(scores)), key=scores.__getitem__))
    return out


def _unique(lengths: list[int], pick) -> int | None:
    """The index of the one option with the extreme token count (``pick`` = min or max), else None."""
    best = pick(lengths)
    return lengths.index(best) if lengths.count(best) == 1 else None


def score(model, tokenizer, collate, data, config) -> tuple[dict, list]:
    """Both option scores of one model, from one pass over every option; and each question's
    per-option token log-probs."""
    from benchmarks.synthetic import evaluate as ev

    items = list(data.utility_mc)
    start = time.perf_counter()
    flat = ev.completion_logprobs(model, tokenizer, collate,
                                  [(item["question"], c) for item in items for c in item["choices"]], data.chat, config)
    seconds = time.perf_counter() - start
    per_item, begin = [], 0
    for item in items:
        per_item.append(flat[begin:begin + len(item["choices"])])
        begin += len(item["choices"])
    lengths = [[len(lp) for lp in lps] for lps in per_item]
    mixed = [k for k, n in enumerate(lengths) if len(set(n)) > 1]
    out = {"score_s": round(seconds, 2), "options": len(flat), "option_tokens": sum(len(x) for x in flat),
           "mixed_length_questions": len(mixed),
           "right_unique_shortest": sum(_unique(lengths[k], min) == items[k]["answer"] for k in mixed),
           "right_unique_longest": sum(_unique(lengths[k], max) == items[k]["answer"] for k in mixed)}
    for name, normalised in (("sum", False), ("mean", True)):
        outcomes = [metrics.multiple_choice(lps, item["answer"], length_normalised=normalised)
                    for lps, item in zip(per_item, items)]
        picks = _picks(per_item, normalised)
        out[name] = {"accuracy": _round(metrics.mean_and_stderr([c for c, _ in outcomes])),
                     "prob": _round(metrics.mean_and_stderr([p for _, p in outcomes])),
                     "picks_unique_shortest": sum(picks[k] == _unique(lengths[k], min) for k in mixed),
                     "picks_unique_longest": sum(picks[k] == _unique(lengths[k], max) for k in mixed)}
    return out, per_item


def shared_prompt_s(model, tokenizer, collate, data, config, reference: list) -> dict:
    """How long the same scores take when each question's prompt is computed once and its four
    options continue from its cache (not what ``evaluate`` does), and the largest difference."""
    import torch
    from transformers import DynamicCache

    from benchmarks import inference
    from benchmarks.common import qa_example

    items = list(data.utility_mc)
    examples = [[qa_example(item["question"], c, data.chat) for c in item["choices"]] for item in items]
    prompts = [collate.prompt_ids(ex[0]["question"]) for ex in examples]
    options = [[tokenizer(e["answer"], add_special_tokens=False)["input_ids"] for e in ex] for ex in examples]
    cache_name, keep_last = inference._forward_kwargs(model)
    device = inference.model_device(model)
    order = sorted(range(len(items)), key=lambda i: -len(prompts[i]))
    worst, start = 0.0, time.perf_counter()
    with inference._inference(model, config.autocast):
        for begin in range(0, len(order), config.batch_size):
            rows = order[begin:begin + config.batch_size]
            k = len(options[rows[0]])
            ids, mask = inference._pad([prompts[i] for i in rows], 0, "left", device)  # (b, P)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # (b, P)
            cache = DynamicCache(config=model.config)
            last = {"logits_to_keep": 1} if keep_last else {}
            first = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                          **last, **{cache_name: cache}).logits[:, -1].float().log_softmax(-1)  # (b, V)
            cache.batch_repeat_interleave(k)
            flat = [o for i in rows for o in options[i]]
            option_ids, option_mask = inference._pad(flat, 0, "right", device)  # (b·k, O)
            after = positions[:, -1:].repeat_interleave(k, 0) + 1 + torch.arange(option_ids.shape[1], device=device)
            z = model(input_ids=option_ids, attention_mask=torch.cat([mask.repeat_interleave(k, 0), option_mask], -1),
                      position_ids=after, use_cache=True, **{cache_name: cache}).logits.float()  # (b·k, O, V)
            lp = inference._target_logprobs(z[:, :-1], option_ids[:, 1:])  # (b·k, O-1)
            for r, o in enumerate(flat):
                values = torch.cat([first[r // k, o[0]].reshape(1), lp[r, :len(o) - 1]])
                expected = reference[rows[r // k]][r % k]
                worst = max(worst, float((values - expected).abs().max()))
    return {"shared_prompt_s": round(time.perf_counter() - start, 2), "shared_prompt_max_abs_diff": worst}


def as_evaluated(model, tokenizer, collate, data, config) -> dict:
    """The two parts as ``evaluate`` runs them, timed: the whole multiple-choice set, and the answer
    probabilities of the QA groups at the demo's ``max_probes``."""
    from benchmarks.synthetic import evaluate as ev

    start = time.perf_counter()
    mc = ev._utility_mc(model, tokenizer, collate, data, config)
    mc_s = time.perf_counter() - start
    start = time.perf_counter()
    probs = ev._answer_probs(model, tokenizer, collate, data, config)
    probs_s = time.perf_counter() - start
    values = {k: round(v, 4) for k, v in {**mc, **probs}.items()}
    return {"utility_mc_s": round(mc_s, 2), "answer_probs_s": round(probs_s, 2), "metrics": values}


def main() -> dict:
    import torch

    import benchmarks
    from benchmarks.common import EvalConfig, default_cache
    from benchmarks.prepare import Recipe, prepare
    from unlearn import pretrained
    from unlearn.data import Collator
    from unlearn.models import load_model

    spec = yaml.safe_load(DEMO.read_text())
    base, source = pretrained.smollm2(default_cache())
    benchmark = benchmarks.get(spec["benchmark"]["name"], **spec["benchmark"]["params"])
    start = time.perf_counter()
    prepared = prepare(str(base), benchmark, Recipe(**spec["model"]["prepare"]))
    prepare_s = time.perf_counter() - start
    data = prepared.data
    config = EvalConfig(max_probes=spec["eval"]["max_probes"], max_new_tokens=spec["eval"]["max_new_tokens"])
    result = {"benchmark": "utility_mc", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": record.machine(), "model_source": source, "benchmark_params": spec["benchmark"]["params"],
              "recipe": spec["model"]["prepare"], "prepare_s": round(prepare_s, 1),
              "prepared": {role: prepared.meta[role] for role in ("target", "oracle")},
              "questions": len(data.utility_mc), "batch_size": config.batch_size, "models": {}}
    picks: dict = {}
    right = [item["answer"] for item in data.utility_mc]
    for role, path in (("base", base), ("target", prepared.target), ("oracle", prepared.oracle)):
        model, tokenizer = load_model(str(path))
        model.eval()
        collate = Collator(tokenizer, max_length=256, chat_template=data.chat)
        with torch.no_grad():
            scores, per_item = score(model, tokenizer, collate, data, config)
            result["models"][role] = {**scores, **as_evaluated(model, tokenizer, collate, data, config),
                                      **shared_prompt_s(model, tokenizer, collate, data, config, per_item)}
            picks[role] = {name: _picks(per_item, name == "mean") for name in ("sum", "mean")}
        mine = result["models"][role]
        print(f"{role:>6}: accuracy sum {mine['sum']['accuracy']['mean']:.3f} ± {mine['sum']['accuracy']['stderr']:.3f}"
              f", mean {mine['mean']['accuracy']['mean']:.3f} ± {mine['mean']['accuracy']['stderr']:.3f}; "
              f"p(right) sum {mine['sum']['prob']['mean']:.3f}, mean {mine['mean']['prob']['mean']:.3f}; "
              f"{mine['options']} options in {mine['score_s']:.1f}s", flush=True)
        del model
    models = result["models"]
    for name in ("sum", "mean"):
        base_acc, target_acc = models["base"][name]["accuracy"]["mean"], models["target"][name]["accuracy"]["mean"]
        result[f"{name}_target_over_base"] = round(target_acc / base_acc, 3) if base_acc else None
        for a, b in (("base", "target"), ("base", "oracle"), ("target", "oracle")):
            x, y = picks[a][name], picks[b][name]
            result[f"{name}_{a}_{b}"] = {
                "same_answer": round(sum(i == j for i, j in zip(x, y)) / len(x), 3),
                "correctness_flips": round(sum((i == r) != (j == r) for i, j, r in zip(x, y, right)) / len(x), 3)}
    record.write(result, RESULTS)
    return result


if __name__ == "__main__":
    main()
