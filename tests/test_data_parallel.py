"""Data-parallel training of one setting (scripts/huatuo_study/model/sft_recipe.py: per_process; scripts/train_adapter.py: launch): the recipe's
effective batch shared out over the processes, and two processes (torchrun, gloo, on the CPU)
training the tiny 4-bit model to the adapter one process trains."""

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

import base_model
import train_adapter
from conftest import with_defaults
from huatuo_study.common import PipelineError, read_json, write_json, write_jsonl
from huatuo_study.model import sft_recipe

SHAPE = with_defaults(
    "models.tiny-s.build",
    {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "vocab_size": 400,
        "seed": 0,
    },
)
QUANT = {"quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"}
QA = [
    ("我最近总是头晕，血压有点高，需要吃药吗？", "建议先连续测量一周血压，如果超过140/90，请到心血管内科就诊。"),
    ("孩子发烧三十八度五，需要去医院吗？", "可以先物理降温，多喝水；精神差或持续高热请及时就医。"),
    ("胃总是反酸烧心是怎么回事？", "可能是胃食管反流，少吃辛辣油腻，睡前不要进食，必要时做胃镜。"),
    ("脸上长湿疹很痒怎么办？", "避免抓挠和热水烫洗，保持皮肤湿润，可以在医生指导下外用药膏。"),
]
# Plain SGD at a constant rate: each update is the gradient itself, so a step over other examples
# (or a gradient scaled wrongly across processes) moves the adapter visibly; Adam's first updates
# are nearly the gradient's sign and would hide it.
RECIPE = {
    "num_train_epochs": 2,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 4,
    "learning_rate": 1.0,
    "weight_decay": 0.0,
    "warmup_steps": 0,
    "lr_scheduler_type": "constant",
    "optim": "sgd",
    "bf16": False,
    "train_sampling_strategy": "group_by_length",
    "activation_checkpointing": True,
    "eval_steps": 2,
    "max_length": 128,
    "save_steps": 100,
    "seed": 1,
}
# No LoRA dropout: its masks come from each process's own random stream, so with dropout one
# process and two would differ as two seeds do, not by rounding alone.
SETTING = {
    "model": "tiny",
    "data": "original",
    "training": RECIPE,
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
}


@pytest.mark.parametrize(
    "batch, accumulation, processes, share",
    [
        (2, 8, 1, (2, 8)),
        (2, 8, 2, (2, 4)),  # the accumulation divides: the recipe's micro-batch, half the accumulation
        (2, 8, 8, (2, 1)),
        (10, 1, 2, (5, 1)),  # setting 4 (batch 10, no accumulation): half the micro-batch
        (4, 3, 8, None),  # 12 does not split over 8
        (10, 1, 3, None),
    ],
)
def test_each_process_takes_an_equal_share_of_the_effective_batch(batch, accumulation, processes, share):
    training = {**RECIPE, "per_device_train_batch_size": batch, "gradient_accumulation_steps": accumulation}
    if share is None:
        with pytest.raises(
            PipelineError,
            match=rf"settings.s1.training: the effective batch of {batch * accumulation} "
            rf"\(.*\) does not split evenly over training_processes: {processes}",
        ):
            sft_recipe.per_process(training, processes, "s1")
        return
    split = sft_recipe.per_process(training, processes, "s1")
    assert (split["per_device_train_batch_size"], split["gradient_accumulation_steps"]) == share
    assert share[0] * share[1] * processes == batch * accumulation
    assert {k: v for k, v in split.items() if "batch" not in k and "accumulation" not in k} == {
        k: v for k, v in training.items() if "batch" not in k and "accumulation" not in k
    }


def test_sft_config_of_a_process_is_its_share_on_the_cpu_and_on_cuda(tmp_path):
    args = train_adapter.sft_config(RECIPE, str(tmp_path), "cpu", "s1", processes=2)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (2, 2)
    args = train_adapter.sft_config(RECIPE, str(tmp_path), "cuda", "s1", processes=2)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (4, 1)  # fewer, larger


def step_examples(batches: list[list[int]], per_step: int) -> list[set[int]]:
    return [set(i for batch in batches[k : k + per_step] for i in batch) for k in range(0, len(batches), per_step)]


def test_the_processes_share_out_the_examples_of_each_step_one_process_takes():
    """The length-grouped order is drawn over the whole effective batch; accelerate deals its
    micro-batches out to the processes in turn: each step of two processes covers the examples of
    the same step of one, epoch after epoch (another order each epoch)."""
    from accelerate.data_loader import BatchSamplerShard
    from datasets import Dataset
    from torch.utils.data import BatchSampler

    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 200, (48,), generator=generator).tolist()
    dataset = Dataset.from_dict({"input_ids": [[0] * n for n in lengths]})

    def sampler(processes):
        args = train_adapter.sft_config(RECIPE, "unused", "cpu", "s1", processes)
        trainer = train_adapter.RecipeSFTTrainer.__new__(train_adapter.RecipeSFTTrainer)
        trainer.args, trainer.processing_class = (
            SimpleNamespace(
                **{
                    k: getattr(args, k)
                    for k in (
                        "train_sampling_strategy",
                        "length_column_name",
                        "train_batch_size",
                        "gradient_accumulation_steps",
                        "seed",
                        "data_seed",
                    )
                },
                world_size=processes,
            ),
            None,
        )
        return trainer._get_train_sampler(dataset)

    one = sampler(1)
    orders = []
    for epoch in (0, 1):
        one.set_epoch(epoch)
        single = step_examples(list(BatchSampler(one, 2, False)), 4)  # micro-batch 2 x accumulation 4
        shards = []
        for rank in (0, 1):
            each = sampler(2)
            each.set_epoch(epoch)
            shards.append(list(BatchSamplerShard(BatchSampler(each, 2, False), 2, rank)))
        # micro-batch 2 x accumulation 2 in each of the two processes
        two = [a | b for a, b in zip(step_examples(shards[0], 2), step_examples(shards[1], 2))]
        assert two == single and len(single) == 6
        orders.append(single)
    assert orders[0] != orders[1]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A training job of the tiny 4-bit model on 16 rows: 2 epochs of 2 steps of 8 examples."""
    root = tmp_path_factory.mktemp("dp")
    rows = [{"id": i, "question": f"{q}（{i}）", "answer": a * (1 + i % 3)} for i in range(5) for q, a in QA]
    write_jsonl(root / "train.jsonl", rows[:16])
    write_jsonl(root / "val.jsonl", rows[16:])
    manifest = base_model.resolve_model(
        {"source": "build", "build": SHAPE}, str(root / "train.jsonl"), root / "m", "cpu"
    )
    write_json(root / "m" / "manifest.json", manifest)
    return {
        "model": str(root / "m" / "manifest.json"),
        "train": str(root / "train.jsonl"),
        "val": str(root / "val.jsonl"),
        "setting": SETTING,
        "quantization": QUANT,
        "device": "cpu",
        "gpu_memory_gib": 32,
        "name": "tiny",
        "tensorboard": None,
        "root": root,
    }


def run(job, processes) -> dict:
    """The job trained in `processes` processes (one: in a process of its own too, as torchrun's
    are), its outputs' folder."""
    out = job["root"] / f"p{processes}"
    spec = {
        **{k: v for k, v in job.items() if k != "root"},
        "processes": processes,
        "checkpoints": str(out / "ckpt"),
        "adapter": str(out / "adapter"),
        "loss": str(out / "loss.csv"),
        "stats": str(out / "stats.json"),
    }
    if processes > 1:
        train_adapter.launch(spec)
    else:
        write_json(out / "job.json", spec)
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as torchrun sets it for each of its processes
        proc = subprocess.run(
            [sys.executable, train_adapter.__file__, str(out / "job.json")], env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
    return out


@pytest.mark.slow
def test_two_processes_train_the_adapter_one_process_trains(job):
    one, two = run(job, 1), run(job, 2)
    stats_one, stats_two = read_json(one / "stats.json"), read_json(two / "stats.json")
    assert stats_one["execution"]["processes"] == 1 and stats_two["execution"]["processes"] == 2
    assert (stats_two["execution"]["micro_batch"], stats_two["execution"]["grad_accum"]) == (2, 2)
    assert stats_one["global_step"] == stats_two["global_step"] == 4
    assert stats_one["train_tokens"] == stats_two["train_tokens"]
    # written once: one adapter, one stats file, one loss file, nothing left of the others
    assert sorted(p.name for p in two.iterdir()) == ["adapter", "ckpt", "loss.csv", "stats.json"]
    a = load_file(one / "adapter" / "adapter_model.safetensors")
    b = load_file(two / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    # The adapter is bfloat16 (TRL keeps a QLoRA adapter in bf16), whose rounding step is 0.4-0.8% of
    # a weight. Two processes add the gradient up in another order (each its half, then gloo's
    # all-reduce), so float32 rounding now and then moves a weight across a bf16 rounding boundary:
    # measured 0-0.35% per tensor here. 1% allows about two such roundings of every weight; under
    # this near-linear SGD a gradient scaled by the process count, or half of each step's examples
    # missing, would move the trained (lora_B) weights by about half or all of their size.
    for name in a:
        x, y = a[name].float(), b[name].float()
        assert (x - y).norm() <= 0.01 * x.norm(), name
