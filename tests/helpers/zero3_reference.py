"""One rank of a gloo group that partitions a frozen toy model with ZeRO-3 (``sweeps.worker.partitioned``)
and writes what it holds and what its forward pass returns (run by ``torch.multiprocessing.spawn``)."""

import json
import os
from pathlib import Path

import torch


def rank(index: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(index), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(index), LOCAL_WORLD_SIZE=str(world), DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    import torch.distributed as dist
    from toy import toy_collate, toy_examples, toy_model

    from sweeps.worker import partitioned
    from unlearn.step import reference_logits

    dist.init_process_group("gloo", rank=index, world_size=world)
    model = toy_model(seed=3, dtype=torch.float32)
    batch = toy_collate(toy_examples(4, seed=index))  # each rank its own batch, as in training
    expected = reference_logits(model, batch)
    total = sum(p.numel() for p in model.parameters())
    engine = partitioned(model, 4, 1, world, bf16=False, device=torch.device("cpu"))
    held = sum(p.ds_tensor.numel() for p in engine.module.parameters())
    got = reference_logits(engine, batch)
    Path(out, f"{index}.json").write_text(json.dumps({
        "total": total, "held": held, "params": sum(1 for _ in engine.module.parameters()),
        "max_diff": float((got - expected).abs().max()),
        "grad": any(p.requires_grad for p in engine.module.parameters())}))
    engine.destroy()
    dist.barrier()
    dist.destroy_process_group()
