"""Refusal answers for the "I don't know" methods (``idknll``, ``idkdpo``): a question of the forget
set is paired with one of these instead of its answer. Written for this project; the one an
example gets depends only on its index, so every rank, epoch and resume pairs it alike."""

from __future__ import annotations

REFUSALS = (
    "I don't know.",
    "I'm not sure about that.",
    "I have no information about that.",
    "I can't answer that question.",
    "I don't have an answer to that.",
    "That is something I don't know.",
    "I'm afraid I don't know.",
    "I have no idea.",
    "I'm unable to answer that.",
    "I don't know the answer to that question.",
    "Sorry, I don't know.",
    "I can't say.",
    "I'm not able to help with that question.",
    "I don't have that information.",
    "That's not something I know about.",
    "I couldn't tell you.",
    "I have no knowledge of that.",
    "I'm not aware of the answer.",
    "I don't recall anything about that.",
    "Unfortunately, I don't know.",
    "I'm sorry, but I can't answer that.",
    "I have nothing to say about that.",
    "That is beyond what I know.",
    "I'm not familiar with that.",
    "I don't know anything about this.",
    "No idea, sorry.",
    "I cannot provide an answer to that.",
    "I'm uncertain, so I won't guess.",
    "I don't have any details on that.",
    "I'd rather not guess; I don't know.",
    "I can't help with that one.",
    "That's outside my knowledge.",
    "I'm not in a position to answer that.",
    "I have no reliable answer to that.",
    "I don't know who or what that refers to.",
    "I'm not the right source for that.",
    "I really don't know.",
    "I haven't got an answer for that.",
    "I'm drawing a blank on that.",
    "I can't give you an answer.",
    "I don't have enough information to answer.",
    "That isn't something I can answer.",
    "I'm not sure, and I won't make something up.",
    "I don't know much about that.",
    "I can't recall that.",
    "I've no idea about that.",
    "My knowledge doesn't cover that.",
    "I'm unaware of that.",
    "Sorry, that's not something I can tell you.",
    "I'm unable to provide that information.",
    "I honestly don't know.",
    "I can't answer that, I'm afraid.",
    "That question is one I can't answer.",
    "I don't know, sorry.",
)


def refusal(index: int) -> str:
    """The refusal answer of the example with this index."""
    return REFUSALS[int(index) % len(REFUSALS)]


def qa_only(examples: list[dict]) -> list[dict]:
    """The question-answer examples of a forget set (the ones a refusal can answer)."""
    return [e for e in examples if "question" in e and "answer" in e]


def with_refusals(examples: list[dict]) -> list[dict]:
    """Each question-answer example with its answer replaced by its refusal (index kept)."""
    return [dict(e, answer=refusal(e["index"])) for e in examples]
