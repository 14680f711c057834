"""The frozen reference model at ZeRO-3 (``sweeps.worker.partitioned``): each of the worker group's
ranks holds 1/world of its weights, and its forward pass returns what the whole model returns."""

import json
import math
import socket

import torch.multiprocessing as mp

from helpers import zero3_reference


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(world: int, tmp_path) -> list[dict]:
    mp.spawn(zero3_reference.rank, args=(world, _free_port(), str(tmp_path)), nprocs=world, join=True)
    return [json.loads((tmp_path / f"{i}.json").read_text()) for i in range(world)]


def test_a_zero3_reference_holds_half_the_weights_on_two_ranks_and_answers_as_the_whole_model(tmp_path):
    world = 2
    ranks = _run(world, tmp_path)
    total, params = ranks[0]["total"], ranks[0]["params"]
    for r in ranks:
        # each parameter is cut into `world` equal pieces, the last padded: at most one element per piece
        assert total / world <= r["held"] <= total / world + params, r
        assert r["max_diff"] < 1e-5, r  # gathered layer by layer, the same logits
        assert not r["grad"]
    assert sum(r["held"] for r in ranks) <= total + params * world
    assert math.isclose(ranks[0]["held"] * world, total, rel_tol=0.05)
