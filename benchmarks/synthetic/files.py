"""The synthetic world written in the MUSE and RWKU layouts (``<root>/muse``, ``<root>/rwku``).

MUSE: ``raw`` (forget / retain1 = retain people the retain term trains on / retain2 = retain people
only evaluated / holdout / neighbor / forget_heldout texts), ``knowmem`` (trained QA forms per
split, paraphrases, ICL examples), ``verbmem`` (bio prefix → rest), ``privleak`` (forget / retain /
holdout bios). RWKU: each forget person is a target with FB / QA / adversarial probes, neighbour
probes, MIA texts, and general-knowledge utility QA (``utility_factuality``).
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import layouts
from benchmarks.synthetic.templates import ADVERSARIAL, BY_KEY, UTILITY
from benchmarks.synthetic.world import Person, SyntheticParams, _Draw, generate


def _qa(person: Person) -> list[dict]:
    return [{"question": BY_KEY[k].qa.format(name=person.name), "answer": v} for k, v in person.facts.items()]


def _paraphrase(person: Person) -> list[dict]:
    return [{"question": BY_KEY[k].paraphrase.format(name=person.name), "answer": v}
            for k, v in person.facts.items()]


def _blank(person: Person) -> list[dict]:
    return [{"query": BY_KEY[k].blank.format(name=person.name), "answer": v} for k, v in person.facts.items()]


def _bios(people: list[Person], params: SyntheticParams, heldout: bool = False) -> list[dict]:
    variants = [params.bios] if heldout else range(params.bios)
    return [{"text": p.bio(v), "subject": p.name} for p in people for v in variants]


def _verbatim(people: list[Person], params: SyntheticParams) -> list[dict]:
    rows = []
    for row in _bios(people, params):
        tokens = row["text"].split(" ")
        cut = len(tokens) // 2
        rows.append({"prompt": " ".join(tokens[:cut]), "gt": " " + " ".join(tokens[cut:])})
    return rows


def _adversarial(person: Person, everyone: list[Person], example: Person, draw: _Draw) -> list[dict]:
    """One probe of every adversarial type, the facts taken in turn."""
    keys = list(person.facts)
    rows = []
    for j, (kind, template) in enumerate(ADVERSARIAL.items()):
        key = keys[j % len(keys)]
        fact = BY_KEY[key]
        answer = person.facts[key]
        values = sorted({p.facts[key] for p in everyone if p.facts[key] != answer})
        options = [values.pop(draw.index(len(values))) for _ in range(min(3, len(values)))]
        options.insert(draw.index(len(options) + 1), answer)
        query = template.format(
            q=fact.qa.format(name=person.name), name=person.name,
            paraphrase=fact.paraphrase.format(name=person.name), options=", ".join(options),
            example_q=fact.qa.format(name=example.name), example_a=example.facts[key], **person.facts)
        if kind == "reverse query":
            answer = person.name
        rows.append({"query": query, "answer": answer, "type": kind})
    return rows


def tables(params: SyntheticParams) -> dict[tuple[str, str, str], list[dict]]:
    """Every file of the benchmark: ``(layout, config, split) -> rows``, in a fixed order."""
    people = generate(params)
    by = {s: [p for p in people if p.split == s]
          for s in ("forget", "retain_train", "retain_eval", "holdout", "neighbor")}
    draw = _Draw(params.seed + 1)
    out: dict[tuple[str, str, str], list[dict]] = {}
    strip = lambda rows: [{"text": r["text"]} for r in rows]  # noqa: E731
    for split, who in (("forget", "forget"), ("retain1", "retain_train"), ("retain2", "retain_eval"),
                       ("holdout", "holdout"), ("neighbor", "neighbor")):
        out["muse", "raw", split] = strip(_bios(by[who], params))
    out["muse", "raw", "forget_heldout"] = strip(_bios(by["forget"], params, heldout=True))
    for split, who in (("forget_qa", "forget"), ("retain_qa", "retain_eval"), ("retain1_qa", "retain_train"),
                       ("neighbor_qa", "neighbor")):
        out["muse", "knowmem", split] = [r for p in by[who] for r in _qa(p)]
    out["muse", "knowmem", "forget_qa_paraphrase"] = [r for p in by["forget"] for r in _paraphrase(p)]
    out["muse", "knowmem", "retain_qa_paraphrase"] = [r for p in by["retain_eval"] for r in _paraphrase(p)]
    icl = [r for p in by["retain_train"] for r in _qa(p)][:3]
    out["muse", "knowmem", "forget_qa_icl"] = icl
    out["muse", "knowmem", "retain_qa_icl"] = icl
    out["muse", "verbmem", "forget"] = _verbatim(by["forget"], params)
    for split, who in (("forget", "forget"), ("retain", "retain_eval"), ("holdout", "holdout")):
        out["muse", "privleak", split] = strip(_bios(by[who], params))

    out["rwku", "forget_target", "test"] = [{"target": r["subject"], "intro": r["text"]}
                                            for r in _bios(by["forget"], params, heldout=True)]
    level = {1: [], 2: [], 3: []}
    neighbour_level = {1: [], 2: []}
    example = by["retain_train"][0]
    for person in by["forget"]:
        tag = {"subject": person.name}
        level[1] += [dict(r, level="1", type="fill in the blank", **tag) for r in _blank(person)]
        level[2] += [{"query": r["question"], "answer": r["answer"], "level": "2", "type": "question answer", **tag}
                     for r in _qa(person)]
        level[3] += [dict(r, level="3", **tag) for r in _adversarial(person, people, example, draw)]
        neighbour = next(p for p in by["neighbor"] if p.name == person.linked)
        tag = {"subject": person.name, "neighbor": neighbour.name}
        neighbour_level[1] += [dict(r, level="1", type="fill in the blank", **tag) for r in _blank(neighbour)]
        neighbour_level[2] += [{"query": r["question"], "answer": r["answer"], "level": "2",
                                "type": "question answer", **tag} for r in _qa(neighbour)]
    for n, rows in level.items():
        out["rwku", f"forget_level{n}", "test"] = rows
    for n, rows in neighbour_level.items():
        out["rwku", f"neighbor_level{n}", "test"] = rows
    out["rwku", "mia_forget", "test"] = _bios(by["forget"], params)
    out["rwku", "mia_retain", "test"] = _bios(by["retain_eval"], params)
    out["rwku", "utility_factuality", "test"] = [{"question": q, "answers": [a], "subject": "general"}
                                                 for q, a in UTILITY]
    out["rwku", "train_positive_llama3", "train"] = _bios(by["forget"], params)
    return out


def write(root: str | Path, params: SyntheticParams) -> Path:
    """Write every file under ``root`` (byte-identical for the same parameters)."""
    root = Path(root)
    for (layout, config, split), rows in tables(params).items():
        layouts.write(root / layout, layout, config, split, rows)
    return root
