"""The fictitious world: people with atomic facts, split into forget / retain / holdout / neighbours.

Deterministic from ``seed``: only ``random.Random(seed).random()`` is used (the one call Python
promises to keep stable across versions), over the in-repo word lists; no date depends on today.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from benchmarks.synthetic import words
from benchmarks.synthetic.templates import FACT_KEYS, FACTS, NEIGHBOUR_BIO, UTILITY_MC
from unlearn.validate import check, check_int, is_int, is_number

SPLITS = ("forget", "retain_train", "retain_eval", "holdout", "neighbor")
PROMPTS = ("plain", "chat")


@dataclass(frozen=True)
class SyntheticParams:
    """``people``: fictitious people besides the neighbours (one neighbour per forget person)."""

    seed: int = 0
    people: int = 40
    forget_fraction: float = 0.1
    holdout_fraction: float = 0.2
    facts: int = 10
    bios: int = 3
    prompt: str = "plain"
    mc_questions: int = len(UTILITY_MC)  # how many of the general-knowledge multiple-choice questions to score

    def __post_init__(self):
        check_int("synthetic.seed", self.seed, 0)
        check_int("synthetic.people", self.people, 4, 1000)
        for name in ("forget_fraction", "holdout_fraction"):
            value = getattr(self, name)
            check(is_number(value) and 0 < value < 0.5, f"synthetic.{name}", "a number in (0, 0.5)", value)
        check_int("synthetic.facts", self.facts, 3, len(FACTS))
        check(is_int(self.bios) and 1 <= self.bios <= 3, "synthetic.bios",
              "an integer in [1, 3] (one more paraphrase is held out)", self.bios)
        check(self.prompt in PROMPTS, "synthetic.prompt", f"one of {', '.join(PROMPTS)}", self.prompt)
        check_int("synthetic.mc_questions", self.mc_questions, 1, len(UTILITY_MC))
        check(self.people - sum(self.counts()) >= 2, "synthetic.people", "large enough to leave >= 2 retain people",
              self.people)

    def counts(self) -> tuple[int, int]:
        """(forget, holdout) people."""
        return (max(1, round(self.people * self.forget_fraction)),
                max(1, round(self.people * self.holdout_fraction)))


@dataclass(frozen=True)
class Person:
    name: str
    split: str
    facts: dict = field(hash=False)
    linked: str = ""  # forget person ↔ neighbour

    @property
    def first(self) -> str:
        return self.name.split()[0]

    def bio(self, variant: int) -> str:
        """Paraphrase ``variant`` of the bio (0 … bios-1 trained, ``bios`` held out)."""
        sentences = [t.bio[(variant + i) % len(t.bio)].format(name=self.name, first=self.first, v=self.facts[t.key])
                     for i, t in enumerate(FACTS) if t.key in self.facts]
        if self.linked:
            sentences.append(NEIGHBOUR_BIO.format(name=self.name, other=self.linked))
        shift = variant % len(sentences)  # paraphrases also differ in order
        return " ".join(sentences[shift:] + sentences[:shift])


class _Draw:
    """Choices from ``Random.random()`` only."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)

    def index(self, n: int) -> int:
        return min(int(self.rng.random() * n), n - 1)

    def pick(self, items):
        return items[self.index(len(items))]

    def distinct(self, n: int, k: int) -> list[int]:
        pool = list(range(n))
        return [pool.pop(self.index(len(pool))) for _ in range(k)]


def _value(draw: _Draw, key: str) -> str:
    if key in ("birth_city", "home_city"):
        return draw.pick(words.CITIES)
    if key == "birth_year":
        return str(1940 + draw.index(60))
    if key == "profession":
        return draw.pick(words.PROFESSIONS)
    if key == "employer":
        return f"{draw.pick(words.COMPANY_A)} {draw.pick(words.COMPANY_B)}"
    if key == "school":
        return draw.pick(words.SCHOOLS)
    if key == "award":
        return draw.pick(words.AWARDS)
    if key == "work":
        return f"The {draw.pick(words.WORK_ADJ)} {draw.pick(words.WORK_NOUN)}"
    if key == "hobby":
        return draw.pick(words.HOBBIES)
    raise KeyError(key)


def generate(params: SyntheticParams) -> list[Person]:
    """Everyone in the world, in a fixed order: forget, retain_train, retain_eval, holdout, neighbor."""
    draw = _Draw(params.seed)
    n_forget, n_holdout = params.counts()
    n_retain = params.people - n_forget - n_holdout
    n_train = max(1, n_retain // 2)
    sizes = {"forget": n_forget, "retain_train": n_train, "retain_eval": n_retain - n_train,
             "holdout": n_holdout, "neighbor": n_forget}
    total = sum(sizes.values())
    # Every person and every partner gets a distinct full name.
    ids = draw.distinct(len(words.FIRST) * len(words.LAST), 2 * total)
    names = [f"{words.FIRST[i // len(words.LAST)]} {words.LAST[i % len(words.LAST)]}" for i in ids]
    keys = FACT_KEYS[:params.facts]
    people, cursor = [], 0
    for split in SPLITS:
        for _ in range(sizes[split]):
            facts = {k: (names[total + cursor] if k == "partner" else _value(draw, k)) for k in keys}
            people.append(Person(names[cursor], split, facts))
            cursor += 1
    forget = [p for p in people if p.split == "forget"]
    neighbours = [p for p in people if p.split == "neighbor"]
    linked = {f.name: n.name for f, n in zip(forget, neighbours)}
    linked.update({n: f for f, n in linked.items()})
    return [Person(p.name, p.split, p.facts, linked.get(p.name, "")) for p in people]
