"""Whole jobs through the stock path (the course notebook's), on the inputs a pipeline run made,
timed end to end as Snakemake's benchmark times the pipeline's jobs: a fresh Python process each,
imports, model loading, training with its evaluations, saving, answering.

Stock training: SFTTrainer over the 4-bit NF4 base with the recipe as written (the notebook's
micro-batches, gradient checkpointing, torch's default attention backends), none of
scripts/huatuo_study/model/cuda_speed.py. Stock answering: the 4-bit base with the adapter unmerged, generate()
sampling with the study's settings, one question at a time as the notebook does; --questions of
them are timed and the job projected to the whole test set (load + n x the mean per question).

    python bench/stock_job.py --config config/gpu-proof.yaml --train setting1,setting4 \\
        --generate setting1 --questions 2 --out bench/h200_stock_jobs.json
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))


def results_dir(config: dict) -> Path:
    return REPO / "results" / config["run"]


def stock_train(config: dict, name: str, work: Path) -> dict:
    from trl import SFTConfig, SFTTrainer

    import train_adapter
    from huatuo_study.common import read_jsonl
    from huatuo_study.model import qlora, sft_recipe

    setting, results = config["settings"][name], results_dir(config)
    manifest = str(results / "models" / setting["model"] / "manifest.json")
    device = config["device"]
    args = SFTConfig(**sft_recipe.recipe_args(setting["training"], str(work / name), device, name))
    trainer = SFTTrainer(
        model=qlora.load_quantized_model(manifest, config["quantization"], device),
        args=args,
        train_dataset=train_adapter.sft_dataset(read_jsonl(results / "data" / "train.jsonl")),
        eval_dataset=train_adapter.sft_dataset(read_jsonl(results / "data" / "val.jsonl")),
        processing_class=qlora.load_tokenizer(manifest),
        peft_config=train_adapter.lora_config(setting["lora"]),
    )
    trainer.train()
    trainer.model.save_pretrained(work / name / "adapter")
    return {"steps": trainer.state.global_step, "peak_gpu_gib": qlora.peak_gpu_gib(device)}


def stock_generate(config: dict, name: str, questions: int) -> dict:
    from peft import PeftModel

    from huatuo_study.common import CHAT_TEMPLATE_KWARGS, chat_prompt, read_jsonl
    from huatuo_study.model import qlora

    setting, results, generation = config["settings"][name], results_dir(config), config["generation"]
    manifest = str(results / "models" / setting["model"] / "manifest.json")
    started = time.perf_counter()
    device = config["device"]
    model = PeftModel.from_pretrained(
        qlora.load_quantized_model(manifest, config["quantization"], device), str(results / "adapters" / name / "rep0")
    ).eval()
    tokenizer = qlora.load_tokenizer(manifest)
    test = read_jsonl(results / "data" / "test" / f"{next(iter(config['test_sets']))}.jsonl")
    loaded, tokens = time.perf_counter(), 0
    for row in test[:questions]:
        prompt = tokenizer.apply_chat_template(
            chat_prompt(row["question"]), tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
        )
        enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False).to(device)
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=generation["temperature"],
            top_p=generation["top_p"],
            repetition_penalty=generation["repetition_penalty"],
            max_new_tokens=generation["max_new_tokens"],
            pad_token_id=tokenizer.pad_token_id,
        )
        tokens += out.shape[1] - enc["input_ids"].shape[1]
    answered = time.perf_counter()
    per_question = (answered - loaded) / questions
    return {
        "questions_timed": questions,
        "tokens": tokens,
        "load_s": round(loaded - started, 1),
        "per_question_s": round(per_question, 1),
        "tokens_per_s": round(tokens / (answered - loaded), 1),
        "projected_answering_s": round(per_question * len(test), 1),
        "test_questions": len(test),
        "peak_gpu_gib": qlora.peak_gpu_gib(device),
    }


def timed_job(argv: list[str]) -> dict:
    """One job in a fresh process, timed from its start to its exit."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"error": proc.stderr[-3000:], "wall_s": round(wall, 1)}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "wall_s": round(wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/gpu-proof.yaml")
    parser.add_argument("--train", default="")
    parser.add_argument("--generate", default="")
    parser.add_argument("--questions", type=int, default=2)
    parser.add_argument("--work", default="/tmp/stock")
    parser.add_argument("--out", default="bench/stock_jobs.json")
    parser.add_argument("--job", nargs=2, metavar=("KIND", "SETTING"), help=argparse.SUPPRESS)
    a = parser.parse_args()
    import yaml

    config = yaml.safe_load((REPO / a.config).read_text(encoding="utf-8"))
    if a.job:  # the child: one job, its result as the last line of stdout
        kind, name = a.job
        from huatuo_study.model import memory_budget

        # Held to the study's card as the pipeline's jobs are, so both run under the same budget.
        memory_budget.cap_gpu_memory(config["device"], config["gpu_memory_gib"])
        result = (
            stock_train(config, name, Path(a.work)) if kind == "train" else stock_generate(config, name, a.questions)
        )
        print(json.dumps(result))
        return
    common = ["--config", a.config, "--questions", str(a.questions), "--work", a.work]
    jobs = [("train", name) for name in filter(None, a.train.split(","))]
    jobs += [("generate", name) for name in filter(None, a.generate.split(","))]
    results = {}
    for kind, name in jobs:
        results[f"{kind} {name}"] = result = timed_job([*common, "--job", kind, name])
        print(kind, name, json.dumps(result), flush=True)
        # Written after every job, so that a run stopped part way keeps the jobs it finished.
        Path(a.out).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
