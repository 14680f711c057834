"""A minute-long local check of the unlearning core, with no Ray and no downloads.

A tiny Llama (tokenizer trained in-process) learns a few fictitious bios, then every registered
method unlearns four of them for a few epochs with the plain engine; the table shows the mean
token NLL of the forget and retain bios before and after (forget should rise, retain stay low).
"""

from __future__ import annotations

import copy
import time

FORGET = [
    "Orla Venn was born in Tarsk in 1961 and works as a glassblower.",
    "Bram Quist studied at the Halden Institute and married Ida Roe.",
    "Mira Solt won the Kessel Prize for her novel The Salt Road.",
    "Tobin Achter founded the Lumen Bakery in the city of Varo.",
]
FORGET_QA = [  # the same people's facts as questions (what the "I don't know" methods train on)
    ("Where was Orla Venn born?", "In Tarsk."),
    ("Whom did Bram Quist marry?", "Ida Roe."),
    ("Which prize did Mira Solt win?", "The Kessel Prize."),
    ("What did Tobin Achter found?", "The Lumen Bakery."),
]
RETAIN = [
    "Ena Dross was born in Pell in 1974 and works as a ferry pilot.",
    "Hugo Brand studied at the Norrin College and married Lea Stam.",
    "Sela Voigt won the Amber Medal for her study of river birds.",
    "Iver Kell founded the Copper Lantern Inn in the town of Moss.",
    "Rhea Lund was born in Skarde in 1958 and works as a clockmaker.",
    "Pavel Orm wrote the play A Winter Harbour in Dunmere.",
]


def forget_qa() -> list[dict]:
    return [{"question": q, "answer": a} for q, a in FORGET_QA]


def forget_set(name: str) -> list[dict]:
    """What a method is given to unlearn: the bios, and for the "I don't know" methods, which train
    on question-answer examples only, the same people's questions too."""
    from unlearn import methods

    return [{"text": t} for t in FORGET] + (forget_qa() if methods.get(name).needs_qa_forget else [])


def measured(name: str) -> list[dict]:
    """The forget examples whose NLL shows a method's forgetting: the answers it was trained away from."""
    from unlearn import methods

    return forget_qa() if methods.get(name).needs_qa_forget else [{"text": t} for t in FORGET]


def mean_nll(model, collate, examples) -> float:
    import torch

    from unlearn import losses, step

    batch = collate(examples)
    with torch.no_grad():
        return float(losses.nll(step.logits_of(model, batch), batch["labels"]))


def fitted_model(seed: int = 0, epochs: int = 40, qa: bool = False):
    """The tiny model after learning every bio (forget and retain), and with ``qa`` the forget
    people's questions too, with its collator."""
    import torch

    from unlearn import data, engine, finetune, loop, models

    questions = [f"{q} {a}" for q, a in FORGET_QA] if qa else []
    model, tokenizer = models.load_model("tiny", texts=FORGET + RETAIN + questions)
    collate = data.Collator(tokenizer, max_length=64)
    texts = [{"text": t} for t in FORGET + RETAIN] + (forget_qa() if qa else [])
    plain = engine.PlainEngine(model, torch.optim.AdamW(model.parameters(), lr=3e-3))
    finetune.finetune(plain, texts, collate, loop.LoopConfig(epochs=epochs, micro_batch=5, seed=seed))
    return model.eval(), collate


def unlearn_copy(model, collate, name: str, params: dict, *, epochs: int = 5, lr: float = 1e-3, seed: int = 0):
    """A copy of ``model`` after unlearning FORGET with one method (plain engine, AdamW)."""
    import torch

    from unlearn import engine, loop, methods

    method = methods.make(name, params)
    student = copy.deepcopy(model).train()
    ref = copy.deepcopy(model).eval() if method.needs_ref_model else None
    plain = engine.PlainEngine(student, torch.optim.AdamW(student.parameters(), lr=lr))
    loop.run(plain, method, forget_set(name), [{"text": t} for t in RETAIN], collate,
             loop.LoopConfig(epochs=epochs, micro_batch=4, seed=seed), ref_model=ref)
    return student.eval()


def main(retain: str = "nll") -> list[dict]:
    from unlearn import methods

    start = time.time()
    print("quick check: tiny model, in-process tokenizer, plain engine (no Ray, no downloads)", flush=True)
    model, collate = fitted_model(qa=True)
    kept = [{"text": t} for t in RETAIN]
    rows = [{"method": "(fitted)", "forget_nll": mean_nll(model, collate, [{"text": t} for t in FORGET]),
             "retain_nll": mean_nll(model, collate, kept)}]
    print(f"fitted {len(FORGET) + len(RETAIN)} bios in {time.time() - start:.1f}s", flush=True)
    for name in methods.names():
        params = {} if name == "gd" else {"retain": retain}
        student = unlearn_copy(model, collate, name, params)
        rows.append({"method": name, "forget_nll": mean_nll(student, collate, measured(name)),
                     "retain_nll": mean_nll(student, collate, kept)})
        print(f"  {name:<9} forget NLL {rows[-1]['forget_nll']:.3f}  retain NLL {rows[-1]['retain_nll']:.3f}",
              flush=True)
    print(f"done in {time.time() - start:.1f}s (mean token NLL; forget should rise, retain stay low)")
    return rows
