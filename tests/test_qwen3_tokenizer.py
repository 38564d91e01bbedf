"""Qwen3's tokenizer built from dashscope's BPE ranks: its ids against the `tiktoken` library over
the same ranks (real Huatuo rows and edge cases), its round trip, its added tokens, and its chat
template's text against Qwen3's format, written out by hand."""

import importlib.metadata
import unicodedata

import numpy as np
import pytest
import tiktoken
import yaml
from tiktoken.load import load_tiktoken_bpe
from transformers import AutoTokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

import base_model
import generate_answers
import train_adapter
from conftest import REPO, with_defaults
from huatuo_study.common import (
    CHAT_TEMPLATE_KWARGS,
    PipelineError,
    chat_prompt,
    read_json,
    read_jsonl,
    write_json,
    write_jsonl,
)
from huatuo_study.model import qwen3_tokenizer

# Qwen's split pattern as Qwen published it with its tiktoken tokenizer (tokenization_qwen.py's
# PAT_STR), typed here so that the pattern transformers ships is checked, not assumed.
QWEN_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

EDGE_CASES = {
    "emoji": "头痛😣 好些了吗？👍🏽 👨‍👩‍👧‍👦 🇨🇳 ❤️",
    "mixed scripts": "Aspirin 阿司匹林 アスピリン 아스피린 Аспирин أسبرين एस्पिरिन ασπιρίνη",
    "digits": "血压140/90mmHg，体温38.5℃，1234567890 ０１２３ ½ ² Ⅳ 一〇",
    "whitespace runs": "a  b   c\t\td\n\n\ne \r\n f    \n   g  \u3000h\u00a0i   ",
    "contractions and case": "I'm fine, DON'T worry, we'LL see; it's John's",
    "punctuation runs": "注意!!!…… ——「用药」《指南》?!?\n\n---\n***",
    "code": "def f(x):\n    return x**2  # 平方\n",
    "combining marks": "café naïve Å Ω ḍ e\u0301 a\u0308 \u1100\u1161\u11a8",
    "nfd input": unicodedata.normalize("NFD", "Ångström résumé 한국어 ﬁ Ⅸ"),
    "rare characters": "𠀀𪚥 \U0001f9ec \ufffd \x00\x07 \u200b\u200d",
}

ADDED = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """Built, saved and loaded back as the pipeline loads a hub tokenizer."""
    folder = tmp_path_factory.mktemp("qwen3-tokenizer")
    qwen3_tokenizer.build_tokenizer(model_max_length=2048).save_pretrained(folder)
    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def reference():
    """tiktoken over the same ranks with Qwen's pattern; it does no normalisation of its own."""
    return tiktoken.Encoding(
        "qwen",
        pat_str=QWEN_PATTERN,
        mergeable_ranks=load_tiktoken_bpe(str(qwen3_tokenizer.ranks_path())),
        special_tokens={t: 151_643 + i for i, t in enumerate(ADDED)},
    )


def reference_ids(reference, text: str) -> list[int]:
    return reference.encode(unicodedata.normalize("NFC", text), allowed_special="all")


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def render(tokenizer, messages, **kwargs) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def test_split_pattern_is_qwens():
    assert PRETOKENIZE_REGEX == QWEN_PATTERN


@pytest.mark.parametrize("text", list(EDGE_CASES.values()), ids=list(EDGE_CASES))
def test_ids_are_tiktokens_on_edge_cases(tokenizer, reference, text):
    assert ids(tokenizer, text) == reference_ids(reference, text)
    assert tokenizer.decode(ids(tokenizer, text)) == unicodedata.normalize("NFC", text)


def test_ids_are_tiktokens_on_real_rows_and_their_chat_text(tokenizer, reference, shared_data):
    rows = read_jsonl(shared_data / "huatuo26m_lite_sample500.jsonl")
    texts = [r[k] for r in rows for k in ("question", "answer")]
    texts += [
        render(
            tokenizer,
            chat_prompt(r["question"]) + [{"role": "assistant", "content": r["answer"]}],
            **CHAT_TEMPLATE_KWARGS,
        )
        for r in rows
    ]
    assert len(texts) == 1500
    wrong = [t for t in texts if ids(tokenizer, t) != reference_ids(reference, t)]
    assert not wrong, f"{len(wrong)} texts differ from tiktoken, the first: {wrong[0]!r}"
    assert all(tokenizer.decode(ids(tokenizer, t)) == unicodedata.normalize("NFC", t) for t in texts)


def test_nfd_text_is_tokenised_as_its_nfc_form(tokenizer, reference):
    nfc = "Ångström résumé 한국어"
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfd != nfc and ids(tokenizer, nfd) == ids(tokenizer, nfc)
    assert reference.encode(nfd) != reference.encode(nfc)  # the tokenizer normalises; the ranks alone do not


def test_added_tokens_sit_at_qwen3s_ids(tokenizer):
    assert len(tokenizer) == 151_669 <= qwen3_tokenizer.QWEN3_VOCAB_ROWS
    assert tokenizer.convert_tokens_to_ids(ADDED) == list(range(151_643, 151_669))
    assert (tokenizer.convert_tokens_to_ids("<think>"), tokenizer.convert_tokens_to_ids("</think>")) == (
        151_667,
        151_668,
    )
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 151_645)
    assert (tokenizer.pad_token, tokenizer.pad_token_id) == ("<|endoftext|>", 151_643)
    assert tokenizer.bos_token is None
    assert set(tokenizer.all_special_tokens) == set(ADDED[:14])  # the tool, code and think tags are not special
    # Added tokens are whole in running text, and decoding without specials keeps <think>.
    text = "<|im_start|>user\n问<think>想</think><|im_end|>"
    assert (
        ids(tokenizer, text)[0] == 151_644 and 151_667 in ids(tokenizer, text) and ids(tokenizer, text)[-1] == 151_645
    )
    assert tokenizer.decode(ids(tokenizer, text), skip_special_tokens=True) == "user\n问<think>想</think>"


def test_missing_ranks_say_which_package_to_install(monkeypatch):
    def absent(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(qwen3_tokenizer.importlib.metadata, "distribution", absent)
    with pytest.raises(
        PipelineError, match=r"dashscope, which is not installed.*pip install --no-deps dashscope==2\.0\.2"
    ):
        qwen3_tokenizer.ranks_path()


# The template's text for Qwen3's cases, written out by hand from Qwen3's documented format.
USER = {"role": "user", "content": "头痛怎么办？"}
SYSTEM = {"role": "system", "content": "你是一名医生。"}
TEMPLATE_CASES = {
    "thinking off": (
        [USER],
        {"add_generation_prompt": True, "enable_thinking": False},
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    ),
    "thinking on": (
        [USER],
        {"add_generation_prompt": True, "enable_thinking": True},
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n",
    ),
    "thinking on by default": (
        [USER],
        {"add_generation_prompt": True},
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n",
    ),
    "system turn": (
        [SYSTEM, USER],
        {"add_generation_prompt": True, "enable_thinking": False},
        "<|im_start|>system\n你是一名医生。<|im_end|>\n<|im_start|>user\n头痛怎么办？<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n",
    ),
    "answer without thinking": (
        [USER, {"role": "assistant", "content": "多休息。"}],
        {"enable_thinking": False},
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n多休息。<|im_end|>\n",
    ),
    "answer with its thinking": (
        [USER, {"role": "assistant", "content": "多休息。", "reasoning_content": "\n可能是疲劳。\n"}],
        {},
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n<think>\n可能是疲劳。\n</think>\n\n"
        "多休息。<|im_end|>\n",
    ),
    "thinking written in the answer": (
        [USER, {"role": "assistant", "content": "<think>\n可能是疲劳。\n</think>\n\n多休息。"}],
        {},
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n<think>\n可能是疲劳。\n</think>\n\n"
        "多休息。<|im_end|>\n",
    ),
    # Earlier answers lose their thinking; the turn after the last question keeps it.
    "multi-turn with assistant history": (
        [
            SYSTEM,
            USER,
            {"role": "assistant", "content": "<think>\n可能是疲劳。\n</think>\n\n多休息。"},
            {"role": "user", "content": "还是痛呢？"},
            {"role": "assistant", "content": "去医院。", "reasoning_content": "持续头痛要排查。"},
        ],
        {},
        "<|im_start|>system\n你是一名医生。<|im_end|>\n<|im_start|>user\n头痛怎么办？<|im_end|>\n"
        "<|im_start|>assistant\n多休息。<|im_end|>\n<|im_start|>user\n还是痛呢？<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n持续头痛要排查。\n</think>\n\n去医院。<|im_end|>\n",
    ),
    "multi-turn asking again, thinking off": (
        [USER, {"role": "assistant", "content": "多休息。"}, {"role": "user", "content": "还是痛呢？"}],
        {"add_generation_prompt": True, "enable_thinking": False},
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n多休息。<|im_end|>\n"
        "<|im_start|>user\n还是痛呢？<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
    ),
    "a system turn later on": (
        [USER, {"role": "system", "content": "简短回答。"}],
        {"add_generation_prompt": True},
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>system\n简短回答。<|im_end|>\n<|im_start|>assistant\n",
    ),
}


@pytest.mark.parametrize("messages, kwargs, expected", list(TEMPLATE_CASES.values()), ids=list(TEMPLATE_CASES))
def test_chat_template_renders_qwen3s_format(tokenizer, messages, kwargs, expected):
    assert render(tokenizer, messages, **kwargs) == expected


@pytest.mark.parametrize(
    "messages, kwargs, message",
    [
        (
            [USER],
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
            "tools are not supported",
        ),
        ([{"role": "tool", "content": "{}"}], {}, "role 'tool' is not system, user or assistant"),
    ],
)
def test_chat_template_refuses_what_it_does_not_render(tokenizer, messages, kwargs, message):
    with pytest.raises(Exception, match=message):
        render(tokenizer, messages, **kwargs)


def test_answer_only_mask_is_exact_on_real_rows(tokenizer, shared_data):
    """Training's rows (TRL masks the prompt's tokens): the prompt rendered alone, as generation
    renders it, is a token prefix of prompt + answer, so the loss falls on the answer alone."""
    rows = read_jsonl(shared_data / "huatuo26m_lite_sample500.jsonl")
    for row in train_adapter.sft_dataset(rows):
        kwargs = row["chat_template_kwargs"]
        prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, **kwargs)["input_ids"]
        full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], **kwargs)["input_ids"]
        assert full[: len(prompt)] == prompt
        assert tokenizer.decode(full[len(prompt) :]) == row["completion"][0]["content"] + "<|im_end|>\n"


def test_chat_formatted_row_lengths(tokenizer, shared_data):
    """A Huatuo row as training sees it (thinking off): the lengths the design quotes."""
    rows = read_jsonl(shared_data / "huatuo26m_lite_sample500.jsonl")
    lengths = [
        len(
            tokenizer.apply_chat_template(
                chat_prompt(r["question"]) + [{"role": "assistant", "content": r["answer"]}], **CHAT_TEMPLATE_KWARGS
            )["input_ids"]
        )
        for r in rows
    ]
    assert (
        round(float(np.mean(lengths)), 1),
        np.median(lengths),
        round(float(np.percentile(lengths, 95))),
        max(lengths),
    ) == (158.8, 146, 266, 427)


def test_the_gpu_proof_builds_its_models_with_qwen3s_tokenizer():
    proof = yaml.safe_load((REPO / "config" / "gpu-proof.yaml").read_text(encoding="utf-8"))
    for model in proof["models"].values():
        assert model["build"]["tokenizer"] == "qwen3"
        assert model["build"]["vocab_size"] == qwen3_tokenizer.QWEN3_VOCAB_ROWS


@pytest.mark.slow  # it builds the tokenizer again
def test_a_build_with_fewer_rows_than_qwen3s_tokens_stops(tmp_path):
    write_jsonl(tmp_path / "train.jsonl", [{"question": "问？", "answer": "答。"}])
    shape = with_defaults("models.tiny-s.build", {**TINY, "vocab_size": 3000, "tokenizer": "qwen3"})
    with pytest.raises(
        PipelineError, match="vocab_size 3000 is fewer embedding rows than the qwen3 tokenizer's 151669"
    ):
        base_model.resolve_model(
            {"source": "build", "build": shape}, str(tmp_path / "train.jsonl"), tmp_path / "m", "cpu"
        )


TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "seed": 0,
}
QA = [
    ("我最近总是头晕，血压有点高，需要吃药吗？", "建议先连续测量一周血压，如果超过140/90，请到心血管内科就诊。"),
    ("孩子发烧三十八度五，需要去医院吗？", "可以先物理降温，多喝水；精神差或持续高热请及时就医。"),
    ("胃总是反酸烧心是怎么回事？", "可能是胃食管反流，少吃辛辣油腻，睡前不要进食，必要时做胃镜。"),
]


@pytest.mark.slow
def test_a_tiny_model_with_qwen3s_tokenizer_trains_on_the_answer_and_answers(tmp_path, reference):
    """The demo keeps a trained tokenizer (Qwen3's 151,936 embedding rows make its tiny models'
    pretraining minutes an epoch on the CPU), so this is where a model built with Qwen3's tokenizer
    goes through training (4-bit base, answer-only loss) and answering, as the GPU proof's do."""
    rows = [{"id": i, "question": q, "answer": a} for i, (q, a) in enumerate(QA * 2)]
    write_jsonl(tmp_path / "train.jsonl", rows[:4])
    write_jsonl(tmp_path / "val.jsonl", rows[4:])
    shape = with_defaults(
        "models.tiny-s.build", {**TINY, "vocab_size": qwen3_tokenizer.QWEN3_VOCAB_ROWS, "tokenizer": "qwen3"}
    )
    manifest = base_model.resolve_model(
        {"source": "build", "build": shape}, str(tmp_path / "train.jsonl"), tmp_path / "m", "cpu"
    )
    write_json(tmp_path / "m" / "manifest.json", manifest)
    assert (manifest["tokenizer"], manifest["tokens"]) == ("qwen3", 151_669)
    assert read_json(tmp_path / "m" / "weights" / "config.json")["vocab_size"] == 151_936
    assert read_json(tmp_path / "m" / "weights" / "config.json")["eos_token_id"] == 151_645

    quant = {"quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"}
    setting = {
        "model": "tiny",
        "data": "original",
        "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]},
        "training": {
            "max_steps": 2,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1,
            "learning_rate": 1e-2,
            "eval_steps": 2,
            "save_steps": 2,
            "max_length": 128,
            "seed": 1,
            "activation_checkpointing": False,
        },
    }
    trainer = train_adapter.train_adapter(
        str(tmp_path / "m" / "manifest.json"),
        str(tmp_path / "train.jsonl"),
        str(tmp_path / "val.jsonl"),
        setting,
        quant,
        "cpu",
        32,
        str(tmp_path / "ckpt"),
        name="tiny",
    )
    assert trainer.state.global_step == 2
    prompt = (
        "<|im_start|>user\n我最近总是头晕，血压有点高，需要吃药吗？<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    answer = "建议先连续测量一周血压，如果超过140/90，请到心血管内科就诊。<|im_end|>\n"
    sample = next(s for s in trainer.train_dataset if s["input_ids"] == reference_ids(reference, prompt + answer))
    n_prompt = next(i for i, label in enumerate(sample["labels"]) if label != -100)
    assert n_prompt == len(reference_ids(reference, prompt))  # the loss is on the answer alone
    assert all(label != -100 for label in sample["labels"][n_prompt:])

    trainer.model.save_pretrained(tmp_path / "adapter")
    gen = with_defaults("generation", {"max_new_tokens": 8, "do_sample": False, "batch_size": 2})
    records, _ = generate_answers.generate_answers(
        str(tmp_path / "m" / "manifest.json"),
        str(tmp_path / "adapter"),
        [{"id": "q1", "question": QA[0][0]}],
        gen,
        quant,
        "cpu",
        32,
    )
    assert records[0]["prompt_tokens"] == len(reference_ids(reference, prompt))
    assert 0 < records[0]["answer_tokens"] <= 8
