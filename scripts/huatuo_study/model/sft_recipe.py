"""A setting's training recipe as TRL's SFTConfig keywords: its `training:` block passed through
under SFTConfig's own names, checked against them, over our defaults and under the pipeline's
fixed choices, and its share of the effective batch in each data-parallel process. Shared by
training (train_adapter) and the model cards, which print every argument the adapter trained with."""

import difflib
import inspect
from collections.abc import Mapping

import transformers
import trl
from trl import SFTConfig

from huatuo_study.common import PipelineError

# Every keyword SFTConfig takes (its own and TrainingArguments'): the names `training:` may use.
SFT_ARGUMENTS = frozenset(inspect.signature(SFTConfig).parameters)


def pipeline_args(training: Mapping, output_dir: str, device: str) -> dict:
    """The pipeline's own choices, not config: the stages around training rely on them, and none
    is a hyperparameter of the study. Evaluation and checkpoints by steps (eval_steps, save_steps)
    and a log line every step: the loss CSV and the resume of a killed job read them. The loss on
    the answer only: sft_dataset's prompt-completion rows are built for it. output_dir: the
    checkpoint folder of this setting, data and base model (run_fingerprint). use_cpu follows
    `device`; the validation loss at the recipe's batch."""
    return dict(
        output_dir=output_dir,
        eval_strategy="steps",
        logging_steps=1,
        save_strategy="steps",
        completion_only_loss=True,
        use_cpu=device == "cpu",
        per_device_eval_batch_size=training["per_device_train_batch_size"],
    )


def default_args(training: Mapping) -> dict:
    """Our defaults for what the study does not set; a setting's `training:` may override them."""
    return dict(
        report_to="none",  # offline unless a setting asks for TensorBoard
        save_total_limit=2,
        dataloader_num_workers=0,
        activation_checkpointing_kwargs={"use_reentrant": False} if training["activation_checkpointing"] else None,
    )


# This pipeline's former `training:` names, for the message that stops an old config.
FORMER_NAMES = {
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "lr": "learning_rate",
    "warmup_ratio": "warmup_steps (a float below 1 is a share of the steps)",
    "scheduler": "lr_scheduler_type",
    "optimizer": "optim",
    "group_by_length": "train_sampling_strategy: group_by_length",
}


# The Trainer integrations a job may report to: none, or TensorBoard event files in the run.
REPORT_TO = ("none", "tensorboard")


def check_training(training: Mapping, name: str) -> None:
    """Stop naming the key when a setting's `training:` holds a name SFTConfig does not take, or
    one the pipeline sets itself (the schema lets any name through)."""
    fixed = pipeline_args(training, "output_dir", "cpu")
    problems = []
    for key in training:
        if key in fixed:
            problems.append(
                f"settings.{name}.training.{key}: set by the pipeline, not by the config "
                "(scripts/huatuo_study/model/sft_recipe.py, pipeline_args)"
            )
        elif key not in SFT_ARGUMENTS:
            close = FORMER_NAMES.get(key) or next(iter(difflib.get_close_matches(key, SFT_ARGUMENTS, n=1)), None)
            problems.append(
                f"settings.{name}.training.{key}: not an argument of TRL's SFTConfig "
                f"(trl {trl.__version__}, transformers {transformers.__version__})"
                + (f"; did you mean {close}?" if close else "")
            )
    if training.get("report_to", "none") not in REPORT_TO:
        problems.append(
            f"settings.{name}.training.report_to: {training['report_to']!r}; the pipeline "
            f"writes only {' or '.join(REPORT_TO)} (others need an account or a server)"
        )
    if problems:
        raise PipelineError("\n".join(problems))


def recipe_args(training: Mapping, output_dir: str, device: str, name: str) -> dict:
    """SFTConfig's keywords for a setting's recipe as written: its `training:` block passed through
    under SFTConfig's own names, over our defaults, under the pipeline's fixed choices."""
    check_training(training, name)
    return {**default_args(training), **training, **pipeline_args(training, output_dir, device)}


def per_process(training: Mapping, processes: int, name: str) -> dict:
    """A setting's recipe for each of `processes` data-parallel processes: each takes an equal share
    of the recipe's effective batch (micro-batch x accumulation), so that micro-batch x accumulation
    x processes is the recipe's. The share keeps the recipe's micro-batch where it divides it (the
    accumulation divides by the processes), else the largest micro-batch below it that does: the
    loss is normalised over the answer tokens of the whole effective batch, so the split changes
    padding and speed, not the step."""
    if processes == 1:
        return dict(training)
    batch, accumulation = training["per_device_train_batch_size"], training["gradient_accumulation_steps"]
    effective = batch * accumulation
    if effective % processes:
        raise PipelineError(
            f"settings.{name}.training: the effective batch of {effective} (per_device_train_batch_size "
            f"{batch} x gradient_accumulation_steps {accumulation}) does not split evenly over "
            f"training_processes: {processes}; choose a process count that divides it"
        )
    share = effective // processes
    micro = max(d for d in range(1, batch + 1) if share % d == 0)
    return {**training, "per_device_train_batch_size": micro, "gradient_accumulation_steps": share // micro}
