"""The answering plan within the GPU memory budget: the form (merged dense or the study's 4-bit
with the adapter) and the batch size, checked by hand on Qwen3-4B's and Qwen3-14B's shapes."""

import math

import pytest
from transformers import Qwen3Config

from huatuo_study.model.memory_budget import (
    FOUR_BIT,
    GIB,
    MERGED,
    RESERVE_SHARE,
    ROW_WORKSPACE_BYTES,
    batch_within,
    cap_gpu_memory,
    form_label,
    kv_bytes_per_token,
    plan_answering,
)

# Qwen3-4B's and Qwen3-14B's published shapes (their config.json on the hub)
QWEN3_4B = Qwen3Config(
    hidden_size=2560,
    intermediate_size=9728,
    num_hidden_layers=36,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
)
QWEN3_14B = Qwen3Config(
    hidden_size=5120,
    intermediate_size=17408,
    num_hidden_layers=40,
    num_attention_heads=40,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=151936,
)
TOKENS = 100 + 800  # a course prompt and the study's max_new_tokens


def test_kv_cache_per_token_by_hand():
    assert kv_bytes_per_token(QWEN3_4B) == 2 * 36 * 8 * 128 * 2 == 147_456
    assert kv_bytes_per_token(QWEN3_14B) == 2 * 40 * 8 * 128 * 2 == 163_840


@pytest.mark.parametrize(
    "free, row, questions, most, expected",
    [
        (10, 1, 200, None, 10),  # 10 fit: 20 batches of 10
        (150, 1, 200, None, 100),  # 150 fit: two batches, even
        (150, 1, 200, 20, 20),  # at most 20 a batch
        (150, 1, 7, 20, 7),
        (0.5, 1, 7, None, 0),  # not one fits
    ],
)
def test_batches_are_as_few_as_fit_and_even(free, row, questions, most, expected):
    assert batch_within(free, row, questions, most) == expected


def test_4b_answers_merged_in_large_batches_within_32_gib():
    dense, four_bit = 8_045_000_000, 2_900_000_000
    plan = plan_answering(dense, four_bit, kv_bytes_per_token(QWEN3_4B), TOKENS, 200, 32, "auto")
    row = kv_bytes_per_token(QWEN3_4B) * TOKENS + ROW_WORKSPACE_BYTES
    fits = int((32 * GIB * (1 - RESERVE_SHARE) - dense) // row)
    assert plan.form == MERGED and fits == 137 and plan.batch_size == 100  # two even batches of 200
    assert plan_answering(dense, four_bit, kv_bytes_per_token(QWEN3_4B), TOKENS, 20, 32, "auto").batch_size == 20
    assert plan_answering(dense, four_bit, kv_bytes_per_token(QWEN3_4B), TOKENS, 200, 32, 20).batch_size == 20


def test_14b_keeps_the_study_s_4_bit_form_on_a_32_gib_card_and_merges_on_a_larger_one():
    dense, four_bit = 29_530_000_000, 9_300_000_000  # 14.8e9 weights; NF4 with bf16 embeddings
    kv = kv_bytes_per_token(QWEN3_14B)
    on_32 = plan_answering(dense, four_bit, kv, TOKENS, 20, 32, 20)
    assert on_32.form == FOUR_BIT and on_32.batch_size == 20  # merged: 27.5 GiB of weights leave 1.3 GiB
    assert math.ceil(20 / batch_within(32 * GIB * 0.9 - dense, kv * TOKENS + ROW_WORKSPACE_BYTES, 20, 20)) > 1
    on_80 = plan_answering(dense, four_bit, kv, TOKENS, 20, 80, 20)
    assert on_80.form == MERGED and on_80.batch_size == 20


def test_a_budget_too_small_for_one_answer_says_so():
    with pytest.raises(MemoryError, match="not one answer fits gpu_memory_gib 8"):
        plan_answering(29_530_000_000, 9_300_000_000, kv_bytes_per_token(QWEN3_14B), TOKENS, 20, 8, "auto")


def test_no_cap_on_the_cpu():
    assert cap_gpu_memory("cpu", 32) is None


@pytest.mark.parametrize(
    "form, adapter, label",
    [
        (MERGED, True, "dequantised, adapter merged"),
        (FOUR_BIT, True, "4-bit, adapter beside"),
        (MERGED, False, "dequantised, no adapter"),
        (FOUR_BIT, False, "4-bit, no adapter"),
    ],
)
def test_the_form_label_names_an_adapter_only_where_the_job_had_one(form, adapter, label):
    assert form_label(form, adapter) == label
