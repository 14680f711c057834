"""LoRA for every method (``unlearn.lora``): the frozen reference is the trained model itself with its
adapters disabled, not a second copy; a LoRA update is the same on the plain engine and on DeepSpeed
ZeRO-2 and ZeRO-3 (one gloo rank, in this process); checkpoints hold the adapters only and resume;
export merges them into a plain model that evaluates as the adapted one did."""

import copy
import json
import socket
from types import SimpleNamespace

import pytest
import torch
from toy import toy_collate, toy_examples, toy_model

from unlearn import engine as engines
from unlearn import loop, lora, methods, models
from unlearn import step as steps
from unlearn.validate import ValidationError

UNDIAL_KL = {"gamma": 3.0, "retain": "kl"}  # a reference on the forget and on the retain batches
CONFIG = lora.LoraConfig(r=4, alpha=8)


def lora_toy(seed=0):
    """A float32 toy Llama with LoRA on every linear layer, and a copy of its base model."""
    base = toy_model(seed, torch.float32)
    return lora.apply(copy.deepcopy(base), CONFIG), base


def data(n=8):
    return loop.with_index(toy_examples(n, seed=1)), toy_examples(n, seed=2, prompt=1)


def adapters(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters() if "lora_" in name}


def train(engine, model, updates=2):
    forget, retain = data()
    method = methods.make("undial", UNDIAL_KL)
    for _ in range(updates):
        loop.update(engine, method, forget, retain, toy_collate, ref_model=lora.Reference(model))


def worker_copies(model, lora_config, zero_stage=2, rank=1):
    """What ``sweeps.worker`` builds beside the trained model: rank 0's evaluation copy (ZeRO-3)
    and the frozen reference of an UnDIAL trial."""
    from sweeps.worker import _copies

    plan = SimpleNamespace(method=methods.make("undial", UNDIAL_KL), lora=lora_config,
                           run=SimpleNamespace(zero_stage=zero_stage),
                           scaling=SimpleNamespace(bf16=False, use_gpu=False))
    return _copies(plan, SimpleNamespace(rank=rank, device=torch.device("cpu")), model)


def test_a_lora_undial_trial_keeps_no_second_model_and_its_reference_is_the_base():
    model, base = lora_toy()
    storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    evaluator, ref = worker_copies(model, CONFIG)
    assert evaluator is None and isinstance(ref, lora.Reference)
    assert ref.module is model and vars(ref) == {"module": model}  # the same module, no weights of its own
    _, full_ref = worker_copies(toy_model(0, torch.float32), None)  # without LoRA: a frozen copy
    assert not {p.untyped_storage().data_ptr() for p in full_ref.parameters()} & storages

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == lora.trainable(model)
    train(engines.PlainEngine(model, optimizer), model)
    forget, _ = data()
    batch = toy_collate(forget[:4])
    model.train()
    with torch.no_grad():
        adapted = steps.logits_of(model, batch)
        assert torch.equal(steps.reference_logits(ref, batch), steps.logits_of(base.eval(), batch))
    assert not torch.allclose(adapted, steps.logits_of(base, batch))  # the adapters trained
    # the reference call leaves the model as it was: training, adapters on and trainable
    assert model.training and not model._adapters_disabled
    assert all(p.requires_grad for name, p in model.named_parameters() if "lora_" in name)
    assert not any(p.requires_grad for name, p in model.named_parameters() if "lora_" not in name)
    assert {p.untyped_storage().data_ptr() for p in model.parameters()} == storages


def test_evaluation_runs_on_the_adapted_model_as_a_plain_transformers_model():
    model, base = lora_toy()
    with torch.no_grad():
        for p in adapters(model).keys():
            model.get_parameter(p).add_(0.1)
    evaluated = lora.adapted(model)
    assert type(evaluated) is type(base) and evaluated is model.get_base_model()
    batch = toy_collate(data()[0][:3])
    with torch.no_grad():
        assert torch.equal(steps.logits_of(evaluated, batch), steps.logits_of(model, batch))
        assert not torch.allclose(steps.logits_of(evaluated, batch), steps.logits_of(base, batch))
    assert lora.adapted(base) is base


@pytest.mark.parametrize("modules", [["q_proj", "v_proj"], "all-linear"])
def test_the_adapters_train_only_the_target_modules(modules):
    model = lora.apply(toy_model(0, torch.float32), lora.LoraConfig(r=2, target_modules=modules))
    adapted = {name.split(".lora_")[0].rsplit(".", 1)[-1] for name in adapters(model)}
    assert adapted == ({"q_proj", "v_proj"} if modules != "all-linear"
                       else {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
    assert lora.trainable(model) == sum(p.numel() for p in adapters(model).values())


def test_target_modules_that_name_nothing_in_the_model_are_one_line():
    with pytest.raises(ValidationError) as error:
        lora.apply(toy_model(0, torch.float32), lora.LoraConfig(target_modules=["qproj"]))
    message = str(error.value)
    assert message.startswith("target_modules must be module names of the model (its linear layers: down_proj, ")
    assert message.endswith("got ['qproj']") and "lm_head" not in message and "\n" not in message


# ------------------------------------------------------------------- DeepSpeed, one gloo rank


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def gloo():
    """A one-rank gloo process group in this process, as a Ray Train worker has one."""
    import torch.distributed as dist

    with pytest.MonkeyPatch.context() as env:
        for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                           "WORLD_SIZE": "1", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}.items():
            env.setenv(key, value)
        dist.init_process_group("gloo", rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """The tiny preset saved as a model directory: the base a LoRA trial's adapters name."""
    model, tokenizer = models.load_model("tiny", texts=["Ada Lovelace wrote the first program.",
                                                        "Alan Turing asked whether machines can think."])
    return models.save_model(model, tokenizer, tmp_path_factory.mktemp("tiny") / "target"), tokenizer


def deepspeed_engine(model, stage):
    from sweeps.deepspeed_config import deepspeed_config
    from sweeps.worker import init_deepspeed

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    config = deepspeed_config(micro_batch=8, grad_accum=1, world_size=1, zero_stage=stage, grad_clip=0)
    return init_deepspeed(torch.device("cpu"), model, optimizer, None, config)


def gathered(module) -> dict:
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(module.parameters())):
        return {name: p.detach().clone() for name, p in module.named_parameters()}


@pytest.mark.parametrize("stage", [2, 3])
def test_lora_under_deepspeed_trains_as_the_plain_engine_and_its_reference_is_the_base(stage, gloo):
    from sweeps.engine import DeepSpeedEngine

    plain, base = lora_toy()
    start = copy.deepcopy(plain.state_dict())
    train(engines.PlainEngine(plain, torch.optim.AdamW([p for p in plain.parameters() if p.requires_grad],
                                                       lr=1e-2)), plain)
    model, _ = lora_toy()
    model.load_state_dict(start)
    ds_engine = deepspeed_engine(model, stage)
    try:
        assert ds_engine.module is model
        train(DeepSpeedEngine(ds_engine), model)
        got, want = gathered(model), dict(plain.named_parameters())
        for name, value in got.items():  # the adapters moved as on the plain engine; the rest did not
            assert torch.allclose(value, want[name], atol=1e-5, rtol=0), name
        batch = toy_collate(data()[0][:4])
        with torch.no_grad():  # the reference is the base model, its ZeRO-3 shards gathered as it runs
            reference = steps.reference_logits(lora.Reference(ds_engine.module), batch)
            assert torch.allclose(reference, steps.logits_of(base.eval(), batch), atol=1e-6, rtol=0)
    finally:
        ds_engine.destroy()


@pytest.mark.parametrize("stage", [2, 3])
def test_lora_checkpoints_hold_the_adapters_resume_and_export_merged(stage, gloo, tiny_dir, tmp_path):
    """The worker's checkpoints of a LoRA trial at ZeRO-``stage``: the DeepSpeed one between epochs
    holds the adapters (and their optimizer state) only and a new engine resumes from it; the last
    one is the adapters of rank 0's evaluation model (gathered at ZeRO-3), which export merges into
    a plain model that gives the adapted model's logits."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    from sweeps import results
    from sweeps.engine import DeepSpeedEngine
    from sweeps.worker import _gather_into, _resume

    directory, tokenizer = tiny_dir
    texts = ["Ada Lovelace wrote the first program.", "Alan Turing asked whether machines can think."]
    forget = loop.with_index([{"ids": tokenizer(t)["input_ids"], "prompt": 2} for t in texts] * 4)
    batch = toy_collate(forget[:2])

    def trial_model():
        model = lora.apply(models.load_model(str(directory))[0], CONFIG, base=str(directory))
        evaluator, ref = worker_copies(model, CONFIG, zero_stage=stage, rank=0)
        return model, evaluator, ref

    model, evaluator, ref = trial_model()
    ds_engine = deepspeed_engine(model, stage)
    engine = DeepSpeedEngine(ds_engine)
    method = methods.make("undial", UNDIAL_KL)
    loop.update(engine, method, forget, forget, toy_collate, ref_model=ref)
    folder = tmp_path / "epoch-checkpoint"
    ds_engine.save_checkpoint(str(folder), tag="epoch1", exclude_frozen_parameters=True)
    ds_engine.module.peft_config["default"].save_pretrained(str(folder))
    saved = get_fp32_state_dict_from_zero_checkpoint(str(folder), tag="epoch1")
    assert saved and all(".lora_" in name for name in saved)  # no frozen weight in the checkpoint
    at_epoch1 = gathered(model)

    resumed, _, _ = trial_model()
    again = deepspeed_engine(resumed, stage)
    try:
        assert _resume(again, SimpleNamespace(as_directory=lambda: _Folder(folder)), adapters_only=True) == (1, None)
        assert again.global_steps == 1
        restored = gathered(resumed)
        assert all(torch.equal(restored[name], at_epoch1[name]) for name in at_epoch1)
    finally:
        again.destroy()

    exported = tmp_path / "from-epoch-checkpoint"  # an unfinished trial's export
    results._merge(folder, exported, saved)
    merged_mid, _ = models.load_model(str(exported))
    with torch.no_grad():
        assert torch.allclose(merged_mid(**_inputs(batch)).logits, lora.adapted(model)(**_inputs(batch)).logits,
                              atol=1e-5, rtol=0)

    loop.update(engine, method, forget, forget, toy_collate, ref_model=ref)  # the last epoch
    _gather_into(ds_engine, evaluator, stage)
    final = evaluator if evaluator is not None else ds_engine.module
    try:
        lora.save_adapters(final, tokenizer, tmp_path / "adapter")
        assert json.loads((tmp_path / "adapter" / lora.ADAPTER_CONFIG).read_text())["base_model_name_or_path"] \
            == str(directory)
        out = tmp_path / "exported"
        results._merge(tmp_path / "adapter", out)
        assert not list(out.glob("adapter*"))
        merged, _ = models.load_model(str(out))
        assert not any("lora" in name for name in merged.state_dict())
        with torch.no_grad():
            adapted = lora.adapted(final)(**_inputs(batch)).logits
            assert torch.allclose(merged(**_inputs(batch)).logits, adapted, atol=1e-5, rtol=0)
            assert not torch.allclose(models.load_model(str(directory))[0](**_inputs(batch)).logits, adapted,
                                      atol=1e-4, rtol=0)
    finally:
        ds_engine.destroy()


@pytest.mark.parametrize("stage", [2, 3])
def test_rmu_trains_only_its_mlps_and_pdu_resumes_its_dual_under_deepspeed(stage, gloo, tmp_path):
    """The worker's way: ``methods.trained_parameters`` before the optimizer, so under DeepSpeed an RMU
    update moves only the selected MLP; and a checkpoint's
    method state (PDU's dual variable) comes back with ``_resume``."""
    from sweeps.engine import DeepSpeedEngine
    from sweeps.worker import _resume

    rmu = methods.make("rmu", {"retain": "none"})
    model = toy_model(3, torch.float32)
    methods.trained_parameters(model, rmu)
    ds_engine = deepspeed_engine(model, stage)
    try:
        before = gathered(model)
        loop.update(DeepSpeedEngine(ds_engine), rmu, loop.with_index(toy_examples(8, seed=5)), None, toy_collate)
        after = gathered(model)
        moved = sorted(name for name in before if not torch.equal(before[name], after[name]))
        assert moved == ["model.layers.0.mlp.down_proj.weight"]
        folder = tmp_path / "checkpoint"
        ds_engine.save_checkpoint(str(folder), tag="epoch1", client_state={"method_state": {"dual": 3.25}})
        assert _resume(ds_engine, SimpleNamespace(as_directory=lambda: _Folder(folder))) == (1, {"dual": 3.25})
    finally:
        ds_engine.destroy()


def _inputs(batch: dict) -> dict:
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


class _Folder:
    """``ray.train.Checkpoint.as_directory()`` of a local folder."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return str(self.path)

    def __exit__(self, *exc):
        return False
