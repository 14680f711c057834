"""`unlearn plan`: the memory model against real tensors and DeepSpeed's estimators, and the CLI."""

import json
import math
from pathlib import Path

import pytest
import torch

from sweeps import plan
from sweeps.cli import main

ROOT = Path(__file__).resolve().parents[1]
GPU_8B = ROOT / "sweeps" / "specs" / "gpu-8b.yaml"


def small_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    return config, LlamaForCausalLM(config)


def test_zero0_and_zero1_on_one_rank_are_the_tensors_adamw_holds():
    """fp32: parameters 4 + gradients 4 + exp_avg 4 + exp_avg_sq 4 = 16 bytes per parameter."""
    config, model = small_llama()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(0, config.vocab_size, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    params = list(model.parameters())
    held = sum(p.nbytes + p.grad.nbytes for p in params) \
        + sum(optimizer.state[p][k].nbytes for p in params for k in ("exp_avg", "exp_avg_sq"))
    shape = plan.shape_of(config, "small")  # counted on the meta device, no weights
    assert shape.params == sum(p.numel() for p in params)
    for stage in (0, 1):
        states, _ = plan.model_states(shape, stage, 1, 1, bf16=False, offload=False)
        assert states == pytest.approx(held, rel=1e-3)  # tolerance 0.1 %: exact in fact
    assert held == 16 * shape.params


@pytest.mark.parametrize("ranks", [1, 2, 4, 8])
def test_zero2_and_zero3_are_deepspeeds_estimates_and_divide_by_ranks(ranks):
    from deepspeed.runtime.zero.stage3 import estimate_zero3_model_states_mem_needs
    from deepspeed.runtime.zero.stage_1_and_2 import estimate_zero2_model_states_mem_needs

    shape = plan.Shape("llama-3-8b", 8_030_261_248, 525_336_576, 32, 4096, 14336, 1024, 128256)
    psi, layer = shape.params, shape.largest_layer
    per_node, nodes = min(ranks, 4), max(1, ranks // 4)
    z2 = plan.model_states(shape, 2, ranks, per_node, bf16=True, offload=False)
    z3 = plan.model_states(shape, 3, ranks, per_node, bf16=True, offload=False)
    assert z2 == estimate_zero2_model_states_mem_needs(psi, per_node, nodes, cpu_offload=False)[::-1]
    assert z3 == estimate_zero3_model_states_mem_needs(psi, layer, per_node, nodes, cpu_offload=False,
                                                       cpu_offload_params=False, zero_init=False)[:2][::-1]
    # ZeRO-2: 16-bit weights (2Ψ) on every rank, gradients + fp32 master + Adam (18Ψ) split over ranks;
    # ZeRO-3: everything split, plus one gathered layer in fp32.
    assert z2[0] == 2 * psi + int(18 * psi / ranks)
    assert z3[0] == 4 * layer + int(18 * psi / ranks)
    # fp32 training: the 16-bit weights are 4 bytes.
    assert plan.model_states(shape, 2, ranks, per_node, False, False)[0] == z2[0] + 2 * psi
    assert plan.model_states(shape, 3, ranks, per_node, False, False)[0] == z3[0] + 2 * psi // ranks
    # offload keeps only the 16-bit weights (ZeRO-2) or one layer (ZeRO-3) on the GPU
    assert plan.model_states(shape, 2, ranks, per_node, True, True)[0] == 2 * psi
    assert plan.model_states(shape, 3, ranks, per_node, True, True)[0] == 4 * layer


def test_activation_formula_counts_what_autograd_saves():
    """What autograd saves in a forward + NLL (parameters excluded) is the formula less what is only
    alive in backward: the gradients (8 bytes per logit), within 10 % (the bf16 logits are saved by
    the loss itself, with no fp32 copy)."""
    from unlearn import losses

    config, model = small_llama()
    model = model.to(torch.bfloat16)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    batch, length = 4, 64
    ids = torch.randint(0, config.vocab_size, (batch, length))
    mask = torch.ones_like(ids)
    mask[0, :8] = 0
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        losses.nll(model(input_ids=ids, attention_mask=mask).logits, ids.masked_fill(mask == 0, -100))
    shape = plan.shape_of(config, "small")
    expected = plan.activations(shape, batch, length, bf16=True) - batch * length * config.vocab_size * 8
    assert sum(saved.values()) == pytest.approx(expected, rel=0.1)


def test_cli_plans_gpu_8b_on_four_80_gb_gpus(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", str(GPU_8B), "--cluster", str(ROOT / "cluster.yaml"), "--results", str(tmp_path),
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Llama-3-8B" in text and "4 × 80 GiB GPUs" in text
    result = json.loads(out.read_text())
    assert result["node"]["gpus"] == 4 and result["node"]["gpu_mem"] == 80 * 2 ** 30
    assert result["model"]["params"] == 8_030_261_248
    assert result["trials"] == 24 and result["concurrency"] == 2 and result["sweep_hours"] > 0
    fitting = [r for r in result["rows"] if r["fits"]]
    assert fitting and all(r["zero_stage"] == 3 and r["workers"] == 4 for r in fitting)
    ga = next(r for r in result["rows"] if r["method"] == "ga")
    assert ga["fits"] and ga["rank0_gib"] < 80
    assert any(line.startswith("ga ") and line.split()[-2] == "yes" for line in text.splitlines())
    # the references: target and oracle in bf16 (2 · 2Ψ), one evaluation, the reserve, on one GPU of a worker node
    two_models = 2 * 2 * 8.03e9 / 2**30 + 3  # target and oracle in bf16 and the reserve, then one evaluation
    assert result["references_fit"] and two_models < result["references_gib"] < two_models + 8
    assert "references: 40.2 GiB on one GPU (yes), in a Ray task placed like a trial worker" in text
    # the same sweep on 40 GB cards does not fit
    capsys.readouterr()
    main(["plan", str(GPU_8B), "--cluster", str(ROOT / "cluster.yaml"), "--results", str(tmp_path),
          "--gpu-mem", "40", "--json", str(out)])
    assert not any(r["fits"] for r in json.loads(out.read_text())["rows"])


def test_measured_throughput_is_read_when_it_fits_the_model(tmp_path):
    shape = plan.Shape("m", 100_000_000, 1, 1, 1, 1, 1, 1)
    tiny = {"tokens_per_s": 5000, "parameters": 200_000, "device": "cpu", "quick": True}
    (tmp_path / "step-quick.json").write_text(json.dumps(tiny))
    assert "assumed" in plan.throughput(shape, False, False, tmp_path)[1]  # a tiny model's speed says nothing
    (tmp_path / "step.json").write_text(json.dumps({"tokens_per_s": 200, "parameters": 200_000_000, "device": "cpu"}))
    tokens_s, note = plan.throughput(shape, False, False, tmp_path)
    assert tokens_s == 400 and "step.json" in note  # rescaled by 6Ψ FLOPs per token
    assert "assumed" in plan.throughput(shape, True, True, tmp_path)[1]  # measured on CPU, not for GPUs


def test_bad_spec_path_is_a_one_line_error():
    with pytest.raises(SystemExit) as error:
        main(["plan", "no/such/spec.yaml"])
    assert str(error.value) == "unlearn: error: spec file 'no/such/spec.yaml' does not exist"


def test_unknown_model_names_the_field(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text((ROOT / "sweeps" / "specs" / "rwku.yaml").read_text()
                    .replace("meta-llama/Meta-Llama-3-8B-Instruct", "acme/mystery-13b"))
    with pytest.raises(SystemExit) as error:
        main(["plan", str(spec), "--cluster", str(ROOT / "cluster.yaml")])
    message = str(error.value)
    assert message.startswith("unlearn: error: model.target 'acme/mystery-13b'") and "\n" not in message


def test_lora_states_are_the_frozen_weights_and_the_adapters_states():
    """fp32, one rank: every weight (4 bytes), and for the adapters only gradients and AdamW's two
    moments; Ψ_a counted on the meta device is the adapters of a real model."""
    from unlearn import lora

    config, model = small_llama()
    adapted = lora.apply(model, lora.LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    trained = [p for p in adapted.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-3)
    ids = torch.randint(0, config.vocab_size, (2, 16))
    adapted(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    held = sum(p.nbytes for p in adapted.parameters()) + sum(p.grad.nbytes for p in trained) \
        + sum(optimizer.state[p][k].nbytes for p in trained for k in ("exp_avg", "exp_avg_sq"))
    shape = plan.shape_of(config, "small")
    adapters = plan.lora_params(config, lora.LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    h, kv, inner, layers = config.hidden_size, 2 * 16, config.intermediate_size, config.num_hidden_layers
    assert adapters == lora.trainable(adapted) == 4 * layers * ((h + h) + (h + kv) + (inner + h))
    assert plan.lora_states(shape, adapters, 0, 1, 1, bf16=False, offload=False)[0] == held
    assert held == 4 * shape.params + 16 * adapters


def test_cli_plans_lora_without_a_reference_copy_and_with_the_adapters_states(tmp_path, capsys):
    """UnDIAL on Llama-3-8B, 4 GPUs, ZeRO-3, bf16 (gpu-8b.yaml), fully and with LoRA r=8 on every
    linear layer: 20,971,520 adapter parameters; no reference copy; the frozen weights split over
    the ranks; on 40 GB cards the full trial does not fit and the LoRA one does."""
    import yaml

    from unlearn.lora import LoraConfig

    rows = {}
    for name, extra in (("full", {}), ("lora", {"lora": {"r": 8}})):
        raw = yaml.safe_load(GPU_8B.read_text())
        raw["methods"] = {"undial": {"lr": 1e-5, "gamma": 10, "retain": "kl", **extra}}
        spec, out = tmp_path / f"{name}.yaml", tmp_path / f"{name}.json"
        spec.write_text(yaml.safe_dump(raw))
        assert main(["plan", str(spec), "--cluster", str(ROOT / "cluster.yaml"), "--results", str(tmp_path),
                     "--gpu-mem", "40", "--json", str(out)]) == 0
        (rows[name],) = json.loads(out.read_text())["rows"]
    text = capsys.readouterr().out
    full, adapted = rows["full"], rows["lora"]
    shape = plan.Shape("llama-3-8b", 8_030_261_248, 525_336_576, 32, 4096, 14336, 1024, 128256)
    assert adapted["lora"] == {"r": 8, "target_modules": "all-linear"} and full["lora"] is None
    per_layer = 2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336)  # (in + out) of q, o; k, v; the MLP
    assert adapted["trainable_params"] == 20_971_520 == 32 * 8 * per_layer
    # ZeRO-3: the bf16 reference partitioned over the 4 workers, plus one gathered layer
    assert full["reference_gib"] * plan.GIB == math.ceil(2 * shape.params / 4) + 2 * shape.largest_layer
    assert adapted["reference_gib"] == 0
    states = 2 * shape.params // 4 + 4 * shape.largest_layer + int(18 * 20_971_520 / 4)
    assert adapted["states_gib"] * plan.GIB == pytest.approx(states, rel=1e-12)
    assert full["activations_gib"] == adapted["activations_gib"]  # still backpropagated through every layer
    assert not full["fits"] and adapted["fits"] and adapted["trial_hours"] < full["trial_hours"]
    assert "undial retain=kl lora r=8: LoRA trains 21M parameters (0.26%)" in text
    with pytest.raises(SystemExit) as error:
        bad = tmp_path / "bad.yaml"
        raw["methods"]["undial"]["lora"] = {"target_modules": ["attn"]}
        bad.write_text(yaml.safe_dump(raw))
        main(["plan", str(bad), "--cluster", str(ROOT / "cluster.yaml"), "--results", str(tmp_path)])
    message = str(error.value)
    assert message.startswith("unlearn: error: methods.undial.lora.target_modules must be module names of "
                              "Llama-3-8B (its linear layers: down_proj, gate_proj, ") and "\n" not in message
    assert LoraConfig().target_modules == "all-linear"


def test_the_gpu_zoo_runs_every_method_with_lora_on_four_48_gb_gpus(tmp_path):
    """sweeps/specs/gpu-8b-zoo.yaml: every registered method with LoRA, and by the plan each trial fits
    a node of four 48 GB GPUs with no reference copy."""
    from sweeps import spec as specs
    from unlearn import methods

    path = ROOT / "sweeps" / "specs" / "gpu-8b-zoo.yaml"
    spec = specs.load(path)
    assert sorted(spec.methods) == methods.names()
    assert all("lora" in spec.space(name) for name in spec.methods)
    out = tmp_path / "plan.json"
    assert main(["plan", str(path), "--cluster", str(ROOT / "cluster.yaml"), "--results", str(tmp_path),
                 "--gpu-mem", "48", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert sorted({row["method"] for row in rows}) == methods.names()
    assert all(row["fits"] and row["reference_gib"] == 0 and row["rank0_gib"] < 48 for row in rows)


def test_gradient_checkpointing_keeps_one_layer_and_the_layer_inputs(tmp_path):
    """gpu-8b.yaml (Llama-3-8B, bf16, 4 GPUs, ZeRO-3) with and without scaling.gradient_checkpointing:
    per training pass the activations drop by (L − 1) layers' activations less the L layer inputs
    kept (e·h bytes per token each), the rest is unchanged, and a pass costs 4/3 of the time."""
    import yaml

    outs = {}
    for checkpointing in (False, True):
        raw = yaml.safe_load(GPU_8B.read_text())
        raw["methods"] = {"ga": {"lr": 1e-5, "retain": "nll"}, "undial": {"lr": 1e-5, "gamma": 10}}
        raw["scaling"]["gradient_checkpointing"] = checkpointing
        spec, out = tmp_path / f"{checkpointing}.yaml", tmp_path / f"{checkpointing}.json"
        spec.write_text(yaml.safe_dump(raw))
        assert main(["plan", str(spec), "--cluster", str(ROOT / "cluster.yaml"), "--results", str(tmp_path),
                     "--forget-tokens", "100000", "--json", str(out)]) == 0
        outs[checkpointing] = json.loads(out.read_text())
    plain, checkpointed = outs[False], outs[True]
    assert checkpointed["gradient_checkpointing"] and not plain["gradient_checkpointing"]
    e, h, inner, layers = 2, 4096, 14336, 32
    tokens = 4 * checkpointed["seq_len"]  # micro-batch 4
    one_layer = tokens * (8 * h + e * (8 * h + 4 * inner)) + 4 * checkpointed["seq_len"] ** 2 * e
    saved = (layers - 1) * one_layer - layers * tokens * e * h  # per pass with gradients
    for a, b in zip(plain["rows"], checkpointed["rows"]):
        passes = 1 + a["retain"]
        assert (a["activations_gib"] - b["activations_gib"]) * plan.GIB == pytest.approx(passes * saved, rel=1e-9)
        assert b["activations_gib"] < a["activations_gib"] and b["states_gib"] == a["states_gib"]
        assert b["other_ranks_gib"] < a["other_ranks_gib"]  # rank 0: here its evaluation working set is larger
        ref_passes = a["ref_forget"]  # a forward each, a third of a step
        ratio = (4 / 3 * passes + ref_passes / 3) / (passes + ref_passes / 3)
        assert b["trial_seconds"]["train_s"] / a["trial_seconds"]["train_s"] == pytest.approx(ratio, rel=1e-12)


def test_a_sweep_whose_trial_needs_more_memory_than_the_largest_node_is_refused_in_one_line():
    """``run_sweep`` asks ``check_fits`` with the largest Ray node's CPUs and ``memory`` resource."""
    from sweeps import spec as specs
    from sweeps.spec import SpecError

    spec = specs.load(ROOT / "sweeps" / "specs" / "tiny.yaml")
    needed = max(row["cpu_per_node_gib"] for row in plan.plan(spec, plan.this_machine())["rows"])
    small = plan.Node("the largest node", 0, None, 2, needed * plan.GIB / 2, 1)
    with pytest.raises(SpecError) as error:
        plan.check_fits(spec, small)
    message = str(error.value)
    assert message.startswith("methods.") and "GiB of CPU memory per node" in message and "\n" not in message
    plan.check_fits(spec, plan.Node("the largest node", 0, None, 2, needed * plan.GIB * 1.01, 1))  # fits
    plan.check_fits(spec, plan.Node("the largest node", 0, None, 2, None, 1))  # memory unknown: not refused
