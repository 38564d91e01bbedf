"""Tiny Qwen3 build, 4-bit loading, QLoRA training (answer-only loss, resume) and generation,
through the real transformers / bitsandbytes / peft / TRL code on the CPU."""

import csv
import dataclasses
import importlib.metadata
import platform
from types import SimpleNamespace

import bitsandbytes as bnb
import pytest
import torch
import yaml
from safetensors import safe_open
from snakemake.utils import validate
from transformers import AutoTokenizer, TrainerCallback

import base_model
import generate_answers
import train_adapter
from conftest import REPO, fake_snakemake, with_defaults
from huatuo_study.answering import answers
from huatuo_study.common import (
    CHAT_TEMPLATE_KWARGS,
    PipelineError,
    chat_prompt,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from huatuo_study.model import cuda_speed, qlora
from huatuo_study.model.qlora import check_device, load_quantized_model, load_tokenizer

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
SETTING = {
    "model": "tiny",
    "data": "original",
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
    "training": {
        "num_train_epochs": 1,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 2,
        "learning_rate": 1e-2,
        "weight_decay": 0.0,
        "warmup_steps": 0.1,
        "lr_scheduler_type": "cosine",
        "optim": "adamw_torch",
        "bf16": False,
        "train_sampling_strategy": "group_by_length",
        "activation_checkpointing": True,
        "eval_steps": 3,
        "max_length": 128,
        "save_steps": 2,
        "seed": 1,
    },
}


def two_steps(training, out, device="cpu"):
    """A setting's SFTConfig cut to two steps without evaluation or checkpoints, as a test wants it."""
    args = train_adapter.sft_config(training, str(out), device, "tiny")
    return dataclasses.replace(args, max_steps=2, eval_strategy="no", save_strategy="no")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    rows = [{"id": i, "question": f"{q}（{i}）", "answer": a} for i in range(6) for q, a in QA]
    write_jsonl(root / "train.jsonl", rows[:20])
    write_jsonl(root / "val.jsonl", rows[20:])
    manifest = base_model.resolve_model(
        {"source": "build", "build": SHAPE}, str(root / "train.jsonl"), root / "m", "cpu"
    )
    write_json(root / "m" / "manifest.json", manifest)
    return root


def test_build_writes_a_qwen3_model_and_its_tokenizer(tiny):
    manifest = read_json(tiny / "m" / "manifest.json")
    assert manifest["source"] == "build" and manifest["parameters"] > 10_000
    tokenizer = load_tokenizer(str(tiny / "m" / "manifest.json"))
    assert len(tokenizer) <= SHAPE["vocab_size"] and tokenizer.eos_token == "<|im_end|>"
    text = QA[0][1]
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text  # byte-level BPE round-trips Chinese
    assert read_json(tiny / "m" / "weights" / "config.json")["model_type"] == "qwen3"


def test_build_makes_a_published_shape_bf16_untied_with_more_rows_than_tokens(tiny, tmp_path):
    """As config/gpu-proof.yaml builds Qwen3-14B's shape: bf16 weights on disk, an output layer of
    its own, and the shape's vocabulary rows, which a tokenizer learnt from little text cannot fill."""
    shape = {**SHAPE, "vocab_size": 5000, "dtype": "bfloat16", "tie_word_embeddings": False}
    base_model.resolve_model({"source": "build", "build": shape}, str(tiny / "train.jsonl"), tmp_path / "m", "cpu")
    config = read_json(tmp_path / "m" / "weights" / "config.json")
    assert config["vocab_size"] == 5000 > len(AutoTokenizer.from_pretrained(tmp_path / "m" / "weights"))
    assert config["tie_word_embeddings"] is False
    with safe_open(tmp_path / "m" / "weights" / "model.safetensors", "pt") as weights:
        assert weights.get_tensor("lm_head.weight").shape == (5000, SHAPE["hidden_size"])
        assert {weights.get_tensor(k).dtype for k in weights.keys()} == {torch.bfloat16}


def test_chat_template_honours_enable_thinking_like_qwen3(tiny):
    tokenizer = load_tokenizer(str(tiny / "m" / "manifest.json"))
    prompt = tokenizer.apply_chat_template(
        chat_prompt("问？"), tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
    )
    assert prompt == "<|im_start|>user\n问？<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    thinking = tokenizer.apply_chat_template(chat_prompt("问？"), tokenize=False, add_generation_prompt=True)
    assert thinking.endswith("<|im_start|>assistant\n")
    full = tokenizer.apply_chat_template(
        chat_prompt("问？") + [{"role": "assistant", "content": "答。"}], tokenize=False, **CHAT_TEMPLATE_KWARGS
    )
    assert full == prompt + "答。<|im_end|>\n"  # the prompt is a prefix: the answer-only mask is exact


def test_quantized_load_is_nf4_with_double_quant(tiny):
    model = load_quantized_model(str(tiny / "m" / "manifest.json"), QUANT, "cpu")
    proj = model.model.layers[0].self_attn.q_proj
    assert isinstance(proj, bnb.nn.Linear4bit)
    assert proj.weight.quant_state.quant_type == "nf4" and proj.weight.quant_state.nested


def test_cuda_config_without_gpu_stops_clearly():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(PipelineError, match="device: 'cuda' but no CUDA GPU is visible"):
        check_device("cuda")


def test_dataset_masks_the_prompt():
    ds = train_adapter.sft_dataset([{"question": "问？", "answer": "答。"}])
    assert ds[0]["prompt"] == [{"role": "user", "content": "问？"}]
    assert ds[0]["completion"] == [{"role": "assistant", "content": "答。"}]
    assert ds[0]["chat_template_kwargs"] == {"enable_thinking": False}


class KillAt(TrainerCallback):
    """Stands in for a job killed mid-training (after a checkpoint was written)."""

    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


@pytest.mark.slow
def test_train_answer_only_loss_and_resume(tiny, caplog):
    caplog.set_level("INFO", logger="pipeline")
    args = (
        str(tiny / "m" / "manifest.json"),
        str(tiny / "train.jsonl"),
        str(tiny / "val.jsonl"),
        SETTING,
        QUANT,
        "cpu",
        32,
        str(tiny / "ckpt"),
    )
    with pytest.raises(KeyboardInterrupt):
        train_adapter.train_adapter(*args, name="tiny", callbacks=[KillAt(3)])
    assert list((tiny / "ckpt").glob("*/checkpoint-2"))
    trainer = train_adapter.train_adapter(*args, name="tiny")
    assert "Resuming from" in caplog.text and "checkpoint-2" in caplog.text
    assert trainer.state.global_step == 5  # 20 rows / (2 x 2), rounded up
    sample = trainer.train_dataset[0]
    n_prompt = next(i for i, label in enumerate(sample["labels"]) if label != -100)
    assert all(label != -100 for label in sample["labels"][n_prompt:])
    tokenizer = load_tokenizer(str(tiny / "m" / "manifest.json"))
    assert tokenizer.decode(sample["input_ids"][:n_prompt]).endswith("<think>\n\n</think>\n\n")
    rows = train_adapter.loss_rows(trainer.state.log_history)
    train_steps = [r["step"] for r in rows if r["split"] == "train"]
    assert train_steps == [1, 2, 3, 4, 5]  # steps 1-2 restored from the checkpoint's history
    assert train_adapter.execution(trainer) == {
        "processes": 1,
        "micro_batch": 2,
        "grad_accum": 2,
        "compiled_layers": False,
        "frozen_base": "4-bit",
    }  # the CPU runs the recipe as written
    assert [r["step"] for r in rows if r["split"] == "val"] == [3, 5]  # every eval_steps, and at the end
    text = train_adapter.loss_csv(rows)
    parsed = list(csv.DictReader(text.splitlines()))
    assert parsed[0].keys() == {"step", "epoch", "split", "loss"} and float(parsed[0]["loss"]) > 0

    trainer.model.save_pretrained(tiny / "adapter")
    test = [{"id": "q1", "question": QA[0][0]}, {"id": "q2", "question": QA[1][0]}]
    gen = with_defaults("generation", {"max_new_tokens": 8, "do_sample": False, "batch_size": 2})
    records, _ = generate_answers.generate_answers(
        str(tiny / "m" / "manifest.json"), str(tiny / "adapter"), test, gen, QUANT, "cpu", 32
    )
    assert [r["id"] for r in records] == ["q1", "q2"]
    assert all(0 < r["answer_tokens"] <= 8 and r["prompt_tokens"] > 5 for r in records)
    again, _ = generate_answers.generate_answers(
        str(tiny / "m" / "manifest.json"), str(tiny / "adapter"), test, gen, QUANT, "cpu", 32
    )
    assert [r["answer"] for r in again] == [r["answer"] for r in records]  # greedy is deterministic


class Files(list):
    """A rule's input or output as a `script:` sees it: a list, with names as attributes."""


def installed(*names):
    """What a stage run in this process records under `versions`: Python, then each package."""
    return {"python": platform.python_version(), **{name: importlib.metadata.version(name) for name in names}}


def test_base_model_stage_records_the_versions_it_built_with(tiny, tmp_path):
    smk = fake_snakemake(
        input={"train": [str(tiny / "train.jsonl")]},
        params={"model": {"source": "build", "build": SHAPE}, "device": "cpu"},
    )
    smk.output = Files([str(tmp_path / "m" / "manifest.json")])
    base_model.main(smk)
    manifest = read_json(tmp_path / "m" / "manifest.json")
    assert manifest["source"] == "build" and manifest["path"] == str(tmp_path / "m" / "weights")
    # For the paper's provenance, read in the stage's own process (its env under --sdm conda).
    assert manifest["versions"] == installed("torch", "transformers", "tokenizers", "huggingface_hub")
    assert load_tokenizer(smk.output[0]).eos_token == "<|im_end|>"  # the manifest still loads


@pytest.mark.slow
def test_train_stage_records_the_versions_it_ran_with(tiny, tmp_path):
    setting = {**SETTING, "training": {**SETTING["training"], "max_steps": 1}}
    out = {
        "adapter": str(tmp_path / "adapter"),
        "stats": str(tmp_path / "rep0.json"),
        "loss": str(tmp_path / "loss.csv"),
    }
    smk = fake_snakemake(
        input={
            "model": str(tiny / "m" / "manifest.json"),
            "train": str(tiny / "train.jsonl"),
            "val": str(tiny / "val.jsonl"),
        },
        output=out,
        params={"setting": setting, "quantization": QUANT, "device": "cpu", "checkpoints": str(tmp_path / "ckpt")},
    )
    smk.resources, smk.wildcards = SimpleNamespace(gpu_memory_gib=32), SimpleNamespace(setting="tiny")
    train_adapter.main(smk)
    stats = read_json(out["stats"])
    assert stats["global_step"] == 1 and stats["device"] == "cpu" and not (tmp_path / "ckpt").exists()
    assert stats["versions"] == installed(
        "torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets"
    )


def test_a_half_written_checkpoint_is_skipped_when_resuming(tmp_path, caplog):
    """A job killed while saving leaves checkpoint-20 without trainer_state.json: resume from 10."""
    for step, files in (
        (10, ("adapter_model.safetensors", "trainer_state.json")),
        (20, ("adapter_model.safetensors",)),
        (5, ("adapter_model.safetensors", "trainer_state.json")),
    ):
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        for name in files:
            (folder / name).write_text("{}", encoding="utf-8")
    (tmp_path / "checkpoint-x").mkdir()  # not a step: ignored
    assert train_adapter.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    assert "checkpoint-20: written only in part" in caplog.text
    assert train_adapter.last_complete_checkpoint(tmp_path / "none") is None


def test_checkpoint_fingerprint_changes_with_data(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("1"), b.write_text("2")
    assert train_adapter.run_fingerprint(SETTING, a) != train_adapter.run_fingerprint(SETTING, b)
    assert train_adapter.run_fingerprint(SETTING, a) == train_adapter.run_fingerprint(SETTING, a)


@pytest.mark.slow
def test_dequantised_base_trains_like_the_nf4_base(tiny, tmp_path):
    manifest = str(tiny / "m" / "manifest.json")
    nf4 = load_quantized_model(manifest, QUANT, "cpu")
    size = cuda_speed.bf16_gib(nf4)
    assert cuda_speed.dequantise_if_fits(nf4, 3.9 * size) is nf4  # over a quarter of the budget: stays 4-bit
    dense = cuda_speed.dequantise_if_fits(load_quantized_model(manifest, QUANT, "cpu"), 4 * size)
    assert not cuda_speed.four_bit(dense) and cuda_speed.four_bit(nf4)
    q_proj = dense.model.layers[0].self_attn.q_proj
    assert q_proj.weight.dtype == torch.float32 and q_proj.weight.numel() == 64 * 64
    reference = nf4.model.layers[0].self_attn.q_proj
    assert torch.equal(
        q_proj.weight, bnb.functional.dequantize_4bit(reference.weight.data, reference.weight.quant_state)
    )

    rows = read_jsonl(tiny / "train.jsonl")[:8]
    losses = []
    for model in (nf4, dense):
        trainer = train_adapter.build_trainer(
            model,
            load_tokenizer(manifest),
            train_adapter.sft_dataset(rows),
            None,
            two_steps(SETTING["training"], tmp_path / str(len(losses))),
            SETTING["lora"],
        )
        trainer.train()
        losses.append([e["loss"] for e in trainer.state.log_history if "loss" in e])
    assert train_adapter.execution(trainer)["frozen_base"] == "dequantised once from 4-bit"
    assert len(losses[0]) == 2 and losses[1] == pytest.approx(losses[0], rel=1e-5)


@pytest.mark.slow
def test_compiled_decoder_layers_train_like_eager_ones(tiny, tmp_path):
    """What CUDA's setting 4 runs, here through inductor's CPU backend: the same losses, and an
    adapter saved under the same names with the same weights."""
    from safetensors.torch import load_file

    manifest = str(tiny / "m" / "manifest.json")
    rows = read_jsonl(tiny / "train.jsonl")[:8]
    no_checkpointing = {**SETTING["training"], "activation_checkpointing": False}
    losses, adapters = [], []
    for compiled in (False, True):
        trainer = train_adapter.build_trainer(
            load_quantized_model(manifest, QUANT, "cpu").dequantize(),
            load_tokenizer(manifest),
            train_adapter.sft_dataset(rows),
            None,
            two_steps(no_checkpointing, tmp_path / str(compiled)),
            SETTING["lora"],
        )
        if compiled:
            cuda_speed.compile_decoder_layers(trainer.model)
        trainer.train()
        losses.append([e["loss"] for e in trainer.state.log_history if "loss" in e])
        trainer.model.save_pretrained(tmp_path / f"adapter-{compiled}")
        adapters.append(load_file(tmp_path / f"adapter-{compiled}" / "adapter_model.safetensors"))
    layer = trainer.model.get_base_model().model.layers[0]
    assert layer._compiled_call_impl is not None  # the compiled forward did run in place of the eager one
    assert len(losses[0]) == 2 and losses[1] == pytest.approx(losses[0], rel=1e-5)
    assert adapters[1].keys() == adapters[0].keys()
    assert all(torch.allclose(adapters[1][k], adapters[0][k], atol=1e-3) for k in adapters[0])


@pytest.mark.slow
def test_fast_generation_answers_like_nf4_with_unmerged_lora(tiny, tmp_path):
    """The generation model (NF4 dequantised once, adapter merged) against the course notebook's way
    (NF4 base, adapter applied on the fly): the same greedy answers, token for token."""
    from peft import PeftModel, get_peft_model

    manifest = str(tiny / "m" / "manifest.json")
    config = train_adapter.lora_config(SETTING["lora"])
    config.init_lora_weights = False  # random, non-zero B: the adapter changes every answer
    get_peft_model(load_quantized_model(manifest, QUANT, "cpu"), config).save_pretrained(tmp_path / "adapter")
    tokenizer = load_tokenizer(manifest)
    questions = [q for q, _ in QA]
    gen = with_defaults("generation", {"max_new_tokens": 16, "do_sample": False, "batch_size": 4})
    slow = answers.answer_questions(
        PeftModel.from_pretrained(load_quantized_model(manifest, QUANT, "cpu"), tmp_path / "adapter"),
        tokenizer,
        questions,
        gen,
    )
    fast = answers.answer_questions(
        qlora.load_generation_model(manifest, QUANT, "cpu", str(tmp_path / "adapter")), tokenizer, questions, gen
    )
    base = answers.answer_questions(load_quantized_model(manifest, QUANT, "cpu"), tokenizer, questions, gen)
    assert [a["answer"] for a in fast] == [a["answer"] for a in slow]
    assert [a["answer"] for a in fast] != [a["answer"] for a in base]  # the adapter was applied


def test_cuda_speedups_keep_each_optimiser_step_the_same():
    course = {**SETTING["training"], "per_device_train_batch_size": 2, "gradient_accumulation_steps": 8}
    assert cuda_speed.speedups(course, "cpu") == {}  # the CPU runs the recipe as written
    fast = cuda_speed.speedups(course, "cuda")
    assert (fast["per_device_train_batch_size"], fast["gradient_accumulation_steps"]) == (16, 1)
    wide = cuda_speed.speedups({**course, "per_device_train_batch_size": 10, "gradient_accumulation_steps": 1}, "cuda")
    assert (wide["per_device_train_batch_size"], wide["gradient_accumulation_steps"]) == (10, 1)
    odd = cuda_speed.speedups({**course, "per_device_train_batch_size": 3, "gradient_accumulation_steps": 7}, "cuda")
    assert (odd["per_device_train_batch_size"], odd["gradient_accumulation_steps"]) == (7, 3)  # 21 = 7 x 3


def test_decoder_layers_compiled_only_on_cuda_without_checkpointing_over_the_dequantised_base(tiny, tmp_path):
    setting4 = {**SETTING["training"], "activation_checkpointing": False}
    nf4 = load_quantized_model(str(tiny / "m" / "manifest.json"), QUANT, "cpu")
    dense = load_quantized_model(str(tiny / "m" / "manifest.json"), QUANT, "cpu").dequantize()

    def compiles(training, device, model=dense):
        return cuda_speed.can_compile_layers(train_adapter.sft_config(training, str(tmp_path), device, "tiny"), model)

    assert compiles(setting4, "cuda")
    assert not compiles(setting4, "cuda", nf4)  # 4-bit matmuls: not measured faster compiled
    assert not compiles(setting4, "cpu")  # the CPU runs the recipe as written
    assert not compiles(SETTING["training"], "cuda")  # gradient checkpointing
    # Any SFTConfig argument passes through the config; these two exclude compiled layers.
    assert not compiles({**setting4, "use_liger_kernel": True}, "cuda")  # inductor cannot compile Liger's RMSNorm
    assert not compiles({**setting4, "torch_compile": True}, "cuda")  # the whole model is compiled instead


def test_training_keys_are_sftconfig_arguments_passed_through(tmp_path):
    args = train_adapter.sft_config(
        {**SETTING["training"], "label_smoothing_factor": 0.1, "max_grad_norm": 0.5}, str(tmp_path), "cpu", "tiny"
    )
    assert args.label_smoothing_factor == 0.1 and args.max_grad_norm == 0.5  # no code names them
    assert args.learning_rate == 1e-2 and args.train_sampling_strategy == "group_by_length"


@pytest.mark.parametrize(
    "key, value, message",
    [
        (
            "lr",
            1e-4,
            r"settings\.tiny\.training\.lr: not an argument of TRL's SFTConfig .*; did you mean learning_rate\?",
        ),
        ("warmup_ratio", 0.03, r"settings\.tiny\.training\.warmup_ratio: not an argument of TRL's SFTConfig"),
        ("learning_rat", 0.03, r"settings\.tiny\.training\.learning_rat: .*; did you mean learning_rate\?"),
        (
            "report_to",
            "wandb",
            r"settings\.tiny\.training\.report_to: 'wandb'; the pipeline writes only none or tensorboard",
        ),
        ("output_dir", "/elsewhere", r"settings\.tiny\.training\.output_dir: set by the pipeline"),
    ],
)
def test_an_unknown_or_fixed_training_key_stops_naming_it(tmp_path, key, value, message):
    with pytest.raises(PipelineError, match=message):
        train_adapter.sft_config({**SETTING["training"], key: value}, str(tmp_path), "cpu", "tiny")


def test_a_wrong_training_key_stops_before_the_model_loads(tmp_path):
    bad = {**SETTING, "training": {**SETTING["training"], "epochs": 1}}
    with pytest.raises(PipelineError, match=r"settings\.s1\.training\.epochs: .*did you mean num_train_epochs\?"):
        train_adapter.train_adapter(
            str(tmp_path / "no-such-manifest.json"),
            "t.jsonl",
            "v.jsonl",
            bad,
            QUANT,
            "cpu",
            32,
            str(tmp_path),
            name="s1",
        )


# The SFTConfig values the study's settings trained with before `training:` took SFTConfig's names
# (scripts/train_adapter.py renamed epochs, batch_size, grad_accum, lr, warmup_ratio, scheduler,
# optimizer, group_by_length and gradient_checkpointing by hand).
COURSE = {
    "num_train_epochs": 1,
    "per_device_train_batch_size": 2,
    "per_device_eval_batch_size": 2,
    "gradient_accumulation_steps": 8,
    "learning_rate": 2e-5,
    "weight_decay": 0.001,
    "warmup_steps": 0.03,
    "lr_scheduler_type": "cosine",
    "optim": "paged_adamw_32bit",
    "bf16": True,
    "train_sampling_strategy": "group_by_length",
    "gradient_checkpointing": True,
    "gradient_checkpointing_kwargs": {"use_reentrant": False},
    "eval_strategy": "steps",
    "eval_steps": 10,
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 50,
    "save_total_limit": 2,
    "seed": 42,
    "max_length": 1024,
    "completion_only_loss": True,
    "report_to": [],
    "dataloader_num_workers": 0,
    "use_cpu": True,
}
STUDY_ARGS = {
    "setting1": COURSE,
    "setting2": COURSE,
    "setting3": COURSE,
    "setting4": {
        **COURSE,
        "per_device_train_batch_size": 10,
        "per_device_eval_batch_size": 10,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1e-4,
        "eval_steps": 1,
    },
}


@pytest.mark.parametrize("name", sorted(STUDY_ARGS))
def test_the_study_settings_build_the_sftconfig_they_always_did(name, tmp_path):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
    validate(config, str(REPO / "config" / "schema.yaml"))
    training = config["settings"][name]["training"]
    args = train_adapter.sft_config(training, str(tmp_path), "cpu", name)
    got = {key: getattr(args, key) for key in STUDY_ARGS[name]}
    assert got == STUDY_ARGS[name]
    assert args.output_dir == str(tmp_path)
    # On CUDA the same effective batch as one micro-batch (the study's 2 x 8 as 16 x 1).
    effective = got["per_device_train_batch_size"] * got["gradient_accumulation_steps"]
    assert cuda_speed.speedups(training, "cuda") == {
        "per_device_train_batch_size": effective,
        "gradient_accumulation_steps": 1,
    }
