"""What a training run leaves for other tools: TensorBoard events holding the logged losses, and
the merged export, which must compute what the 4-bit base with its adapter computes."""

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from transformers import AutoModelForCausalLM, AutoTokenizer

import base_model
import merge_adapter
import train_adapter
from conftest import with_defaults
from huatuo_study.answering.answers import answer_questions
from huatuo_study.common import write_json, write_jsonl
from huatuo_study.model.qlora import load_generation_model, load_quantized_model, load_tokenizer

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
]
SETTING = {
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "o_proj"]},
    "training": {
        "num_train_epochs": 1,
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 2e-2,
        "weight_decay": 0.0,
        "warmup_steps": 0,
        "lr_scheduler_type": "constant",
        "optim": "adamw_torch",
        "bf16": False,
        "train_sampling_strategy": "random",
        "activation_checkpointing": False,
        "eval_steps": 2,
        "max_length": 96,
        "save_steps": 100,
        "seed": 1,
        "report_to": "tensorboard",
    },
}
# float32 on the CPU: the merged weight W + BA against W x + B(A x) differs by rounding only.
MERGE_TOLERANCE = 1e-5
# bitsandbytes' CPU 4-bit matmul does not reproduce its own dequantised weights' matmul exactly
# (3.7e-3 apart in the logits of this base alone, with no adapter): the 4-bit path gets a wider one.
FOUR_BIT_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    rows = [{"id": i, "question": f"{q}（{i}）", "answer": a} for i in range(4) for q, a in QA]
    write_jsonl(root / "train.jsonl", rows[:8])
    write_jsonl(root / "val.jsonl", rows[8:])
    manifest = base_model.resolve_model(
        {"source": "build", "build": SHAPE}, str(root / "train.jsonl"), root / "m", "cpu"
    )
    write_json(root / "m" / "manifest.json", manifest)
    trainer = train_adapter.train_adapter(
        str(root / "m" / "manifest.json"),
        str(root / "train.jsonl"),
        str(root / "val.jsonl"),
        SETTING,
        QUANT,
        "cpu",
        32,
        str(root / "ckpt"),
        name="tiny",
        tensorboard_dir=str(root / "tb"),
    )
    trainer.model.save_pretrained(root / "adapter")
    return root, train_adapter.loss_rows(trainer.state.log_history)


def test_tensorboard_events_hold_the_losses_of_the_loss_csv(trained):
    root, rows = trained
    events = EventAccumulator(str(root / "tb"), size_guidance={"scalars": 0})
    events.Reload()
    for tag, split in (("train/loss", "train"), ("eval/loss", "val")):
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        expected = [(r["step"], r["loss"]) for r in rows if r["split"] == split]
        assert [s for s, _ in logged] == [s for s, _ in expected] and len(expected) >= 2
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6)  # stored as float32


def test_the_merged_export_computes_what_the_base_with_its_adapter_does(trained):
    from peft import PeftModel

    root, _ = trained
    manifest = str(root / "m" / "manifest.json")
    merge_adapter.export(manifest, str(root / "adapter"), QUANT, "cpu", root / "merged")
    assert {"model.safetensors", "config.json", "generation_config.json", "tokenizer.json"} <= {
        p.name for p in (root / "merged").iterdir()
    }

    exported = AutoModelForCausalLM.from_pretrained(root / "merged").eval()
    assert getattr(exported.config, "quantization_config", None) is None  # dense, not quantised again
    tokenizer = AutoTokenizer.from_pretrained(root / "merged")
    ids = tokenizer([q for q, _ in QA], return_tensors="pt", padding=True)
    # The base as the answers use it (NF4 dequantised once), with the adapter unmerged beside it;
    # and the 4-bit base itself, as training used it.
    dense = load_quantized_model(manifest, QUANT, "cpu").dequantize()
    with_adapter = PeftModel.from_pretrained(dense, root / "adapter").eval()
    four_bit = PeftModel.from_pretrained(load_quantized_model(manifest, QUANT, "cpu"), root / "adapter").eval()
    in_memory = load_generation_model(manifest, QUANT, "cpu", str(root / "adapter"))
    with torch.no_grad():
        got, want, trained_as, answered_by = (m(**ids).logits for m in (exported, with_adapter, four_bit, in_memory))
        with with_adapter.disable_adapter():
            untuned = with_adapter(**ids).logits
    assert (want - untuned).abs().max() > 100 * MERGE_TOLERANCE  # the adapter changes the logits
    assert (got - want).abs().max() < MERGE_TOLERANCE  # measured 2e-7
    assert torch.equal(got, answered_by)  # the very model the pipeline answers with
    assert (got - trained_as).abs().max() < FOUR_BIT_TOLERANCE  # measured 1.8e-3

    greedy = with_defaults("generation", {"do_sample": False, "max_new_tokens": 12, "batch_size": 3})
    questions = [q for q, _ in QA]
    ours = answer_questions(
        load_generation_model(manifest, QUANT, "cpu", str(root / "adapter")),
        load_tokenizer(manifest),
        questions,
        greedy,
    )
    theirs = answer_questions(exported, AutoTokenizer.from_pretrained(root / "merged"), questions, greedy)
    assert [a["answer"] for a in theirs] == [a["answer"] for a in ours]
