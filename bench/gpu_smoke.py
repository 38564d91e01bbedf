"""GPU proof of the pipeline's train and generate code: a Qwen3-4B-shaped model (its published
config, random weights) through the study config's setting1 and setting4 recipes for a few
steps, then batched generation with each adapter. Prints versions, card, times, peak memory.

    python bench/gpu_smoke.py --rows 48 --out results/gpu_smoke.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "bench"))

import generate_answers  # noqa: E402
import train_adapter  # noqa: E402
from huatuo_study.common import setup_logging, write_json, write_jsonl  # noqa: E402
from train_bench import demo_rows, package_versions, random_model, study_config  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--work", default="/tmp/gpu_smoke")
    parser.add_argument("--out", default="results/gpu_smoke.json")
    args = parser.parse_args()
    setup_logging()
    config = study_config()
    work = Path(args.work)
    rows = demo_rows()
    write_jsonl(work / "train.jsonl", rows[: args.rows])
    write_jsonl(work / "val.jsonl", rows[args.rows : args.rows + 8])
    test = [{"id": r["id"], "question": r["question"]} for r in rows[-8:]]
    t0 = time.time()
    manifest, _ = random_model("4b", work, rows)
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "build_s": round(time.time() - t0, 1),
        "settings": {},
        "versions": package_versions(),
    }
    generation = {**config["generation"], "max_new_tokens": 32}
    for name in ("setting1", "setting4"):
        setting = config["settings"][name]
        torch.cuda.reset_peak_memory_stats()
        t = time.time()
        trainer = train_adapter.train_adapter(
            manifest,
            str(work / "train.jsonl"),
            str(work / "val.jsonl"),
            setting,
            config["quantization"],
            "cuda",
            config["gpu_memory_gib"],
            str(work / f"ckpt-{name}"),
            name=name,
        )
        train_s = time.time() - t
        trainer.model.save_pretrained(work / f"adapter-{name}")
        losses = train_adapter.loss_rows(trainer.state.log_history)
        peak_train = torch.cuda.max_memory_allocated() / 2**30
        del trainer
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t = time.time()
        answers = generate_answers.generate_answers(
            manifest, str(work / f"adapter-{name}"), test, generation, config["quantization"], "cuda"
        )
        report["settings"][name] = {
            "steps": max(r["step"] for r in losses),
            "train_s": round(train_s, 1),
            "peak_train_gib": round(peak_train, 2),
            "losses": losses,
            "generate_s": round(time.time() - t, 1),
            "answer_tokens": sum(a["answer_tokens"] for a in answers),
            "peak_generate_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "first_answer": answers[0]["answer"][:80],
        }
    write_json(args.out, report)
    print(json.dumps({k: v for k, v in report.items()}, ensure_ascii=False, indent=1, default=str)[:6000])


if __name__ == "__main__":
    main()
