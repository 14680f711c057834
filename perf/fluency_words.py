"""RWKU's fluency score under three word splitters, on SmolLM2-135M-Instruct's own answers.

RWKU scores fluency as (2/3*H2 + 4/3*H3)/2 x 100, H_n the entropy in bits of the answer's word
n-grams, with words from ``nltk.word_tokenize`` (which needs nltk's English Punkt model). This
generates greedy 256-token answers to 210 plain instructions (chat template, "Instruction: ...\\n")
and compares, per answer, the score with (a) Punkt sentences (untrained, or the English model when
nltk has it) + ``NLTKWordTokenizer``, (b) ``word_tokenize(preserve_line=True)`` and (c) the old
regex. Numbers go to ``perf/results/fluency_words.json``; the answers to ``--answers``.

    .venv/bin/python perf/fluency_words.py            # generate (a few minutes on 2 CPU cores)
    .venv/bin/python perf/fluency_words.py --reuse    # score the answers saved by an earlier run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a script without installing the repository

import nltk  # noqa: E402
import record  # noqa: E402  (perf/record.py, beside this file)
import torch  # noqa: E402
from nltk.tokenize.punkt import PunktTokenizer  # noqa: E402

from benchmarks import rwku_utility as U  # noqa: E402

RESULTS = ROOT / "perf" / "results" / "fluency_words.json"
TEMPLATES = ["Write a short paragraph about {}.", "Explain how {} works.", "Describe the history of {}.",
             "Give three tips for someone learning about {}.", "What are the main benefits and drawbacks of {}?",
             "Write a short story that involves {}.", "Summarize what a student should know about {}."]
TOPICS = ["the printing press", "solar panels", "the internet", "vaccines", "the bicycle", "public libraries",
          "coffee", "the Roman Empire", "electric cars", "honey bees", "the Olympic Games", "jazz music",
          "the human heart", "volcanoes", "chess", "the London Underground", "rice farming", "the telephone",
          "recycling", "the Moon", "bread baking", "the Great Wall of China", "computer viruses", "rainforests",
          "the stock market", "airplanes", "the piano", "tea", "earthquakes", "the United Nations"]
OLD_WORD = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]")
ABBREV = re.compile(r"\b(?:[A-Z][a-z]{0,3}|[a-z]{1,4})\. [A-Z]")  # "Dr. Smith", "U.S. Army", "cat. The"
CAPITAL_ABBREV = re.compile(r"\b[A-Z][a-z]{0,3}\. [A-Z]")  # the capitalised ones only


SPLITTERS = {"punkt": U.words,  # what RWKU's fluency uses here
             "word_tokenize": lambda t: nltk.word_tokenize(t, preserve_line=True),
             "regex": OLD_WORD.findall}
PUNKT = "english" if isinstance(U._splitters()[0], PunktTokenizer) else "untrained"


def fluency(words: list[str]) -> float:
    return 100 * U.word_entropy(words)


def answers(instructions: list[str]) -> tuple[list[str], dict]:
    from benchmarks.common import default_cache
    from benchmarks.inference import generate
    from unlearn.models import load_model
    from unlearn.pretrained import smollm2

    path, source = smollm2(default_cache())
    model, tokenizer = load_model(str(path))
    model.eval()
    ids = [tokenizer(tokenizer.apply_chat_template([{"role": "user", "content": "Instruction: " + i + "\n"}],
                                                   add_generation_prompt=True, tokenize=False),
                     add_special_tokens=False)["input_ids"] for i in instructions]
    start = time.perf_counter()
    texts = generate(model, tokenizer, ids, max_new_tokens=256, batch_size=16,
                     progress=lambda done, total: print(f"  generated {done}/{total} "
                                                        f"({time.perf_counter() - start:.0f} s)", flush=True))
    return texts, {"model_source": source, "generate_s": round(time.perf_counter() - start, 1)}


def compare(base: list[float], other: list[float]) -> dict:
    diffs = [o - b for b, o in zip(base, other)]
    return {"mean": round(sum(other) / len(other), 3), "mean_diff": round(sum(diffs) / len(diffs), 3),
            "mean_abs_diff": round(sum(map(abs, diffs)) / len(diffs), 3),
            "max_abs_diff": round(max(map(abs, diffs)), 3), "texts_differing": sum(abs(d) > 1e-9 for d in diffs)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=Path, default=Path("/tmp/fluency_answers.json"))
    parser.add_argument("--reuse", action="store_true", help="score the saved --answers instead of generating")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    instructions = [t.format(topic) for t in TEMPLATES for topic in TOPICS]
    if args.reuse:
        saved = json.loads(args.answers.read_text())
        texts, info = saved["answers"], saved.get("info", {})
    else:
        print(f"generating {len(instructions)} answers of up to 256 tokens", flush=True)
        texts, info = answers(instructions)
        args.answers.write_text(json.dumps({"instructions": instructions, "answers": texts, "info": info}, indent=1))
    scores = {name: [fluency(split(t)) for t in texts] for name, split in SPLITTERS.items()}
    result = {
        "benchmark": "fluency_words",
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": record.machine(),
        "model": "smollm2", **info, "punkt": PUNKT, "texts": len(texts),
        "empty_texts": sum(not t.strip() for t in texts),
        "words_mean": {name: round(sum(len(split(t)) for t in texts) / len(texts), 1)
                       for name, split in SPLITTERS.items()},
        "texts_with_abbreviation_like": sum(bool(ABBREV.search(t)) for t in texts),
        "texts_with_capitalised_abbreviation_like": sum(bool(CAPITAL_ABBREV.search(t)) for t in texts),
        "punkt_mean": round(sum(scores["punkt"]) / len(texts), 3),
        "vs_punkt": {name: compare(scores["punkt"], scores[name]) for name in ("word_tokenize", "regex")},
    }
    print(f"{'splitter':<16} {'mean':>8} {'mean diff':>10} {'mean |d|':>9} {'max |d|':>8} {'differ':>7}")
    print(f"{'punkt/' + PUNKT:<16} {result['punkt_mean']:>8}")
    for name, c in result["vs_punkt"].items():
        print(f"{name:<16} {c['mean']:>8} {c['mean_diff']:>10} {c['mean_abs_diff']:>9} {c['max_abs_diff']:>8} "
              f"{c['texts_differing']:>7}")
    print(f"{result['texts']} texts ({result['empty_texts']} empty) | abbreviation-like in "
          f"{result['texts_with_abbreviation_like']} "
          f"(capitalised: {result['texts_with_capitalised_abbreviation_like']}) | mean words {result['words_mean']}")
    record.write(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
