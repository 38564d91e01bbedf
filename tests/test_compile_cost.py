"""Compile or not: the decoder layers are compiled only where the measured saving over the job's
trained and evaluated tokens beats the measured compilation (scripts/huatuo_study/model/cuda_speed.py)."""

from types import SimpleNamespace

import pytest
from datasets import Dataset

import train_adapter
from huatuo_study.model import cuda_speed
from test_models import SETTING

SETTING4 = {
    **SETTING["training"],
    "activation_checkpointing": False,
    "per_device_train_batch_size": 10,
    "gradient_accumulation_steps": 1,
    "eval_steps": 1,
    "num_train_epochs": 1,
}


def trainer(tmp_path, training, n_train, n_val, length, device="cuda"):
    """What the cost model reads of a trainer: its arguments, tokenised datasets and model."""
    rows = lambda n: Dataset.from_dict({"input_ids": [[1] * length] * n})  # noqa: E731
    args = train_adapter.sft_config(training, str(tmp_path), device, "tiny")
    return SimpleNamespace(
        args=args,
        train_dataset=rows(n_train),
        eval_dataset=rows(n_val),
        model=SimpleNamespace(parameters=lambda: iter(())),
    )


def test_the_saving_is_the_eager_minus_the_compiled_time_less_each_compilation():
    per_token = 1 / cuda_speed.EAGER_TOKENS_PER_S - 1 / cuda_speed.COMPILED_TOKENS_PER_S
    assert cuda_speed.compile_saving_s(1_000_000, 0) == pytest.approx(1_000_000 * per_token - cuda_speed.COMPILE_S)
    # evaluation: a third of a trained token each, and a second compilation (eval mode)
    assert cuda_speed.compile_saving_s(0, 3_000_000) == pytest.approx(1_000_000 * per_token - 2 * cuda_speed.COMPILE_S)
    break_even = cuda_speed.COMPILE_S / per_token  # ~838k trained tokens at the measured rates
    assert cuda_speed.compile_saving_s(break_even * 0.99, 0) < 0 < cuda_speed.compile_saving_s(break_even * 1.01, 0)


def test_job_tokens_count_every_epoch_and_every_evaluation(tmp_path):
    job = trainer(tmp_path, {**SETTING4, "num_train_epochs": 2, "eval_steps": 5}, n_train=40, n_val=6, length=7)
    # 40 rows x 7 tokens x 2 epochs; 4 steps an epoch, 8 in all: evaluations at step 5 and at the end
    assert cuda_speed.job_tokens(job) == (560, 2 * 6 * 7)
    capped = trainer(tmp_path, {**SETTING4, "max_steps": 2}, n_train=40, n_val=6, length=7)
    assert cuda_speed.job_tokens(capped)[0] == 2 * 10 * 7  # max_steps: 2 batches of 10


@pytest.mark.slow
def test_the_studys_setting4_is_not_compiled_a_whole_epoch_of_huatuo_is(tmp_path):
    """The study's setting 4 (400 rows of ~155 tokens, 40 steps, the 100 validation rows evaluated
    after each): eager. The same recipe over Huatuo26M-Lite's ~178k rows: compiled."""
    study = trainer(tmp_path, SETTING4, n_train=400, n_val=100, length=155)
    train, evaluated = cuda_speed.job_tokens(study)
    assert (train, evaluated) == (400 * 155, 40 * 100 * 155)
    assert cuda_speed.compile_saving_s(train, evaluated) < 0 and not cuda_speed.compiles_layers(study)
    epoch = trainer(tmp_path, {**SETTING4, "eval_steps": 1000}, n_train=178_000, n_val=100, length=155)
    assert cuda_speed.compile_saving_s(*cuda_speed.job_tokens(epoch)) > 0 and cuda_speed.compiles_layers(epoch)
    # where the layers cannot be compiled, the saving does not matter
    assert not cuda_speed.compiles_layers(
        trainer(tmp_path, {**SETTING4, "eval_steps": 1000}, 178_000, 100, 155, device="cpu")
    )
    checkpointed = {**SETTING4, "activation_checkpointing": True, "eval_steps": 1000}
    assert not cuda_speed.compiles_layers(trainer(tmp_path, checkpointed, 178_000, 100, 155))
