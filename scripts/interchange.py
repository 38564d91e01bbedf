"""Stage interchange: one test set's answers and verdicts in the layouts other evaluation tools
read. FastChat llm_judge: question.jsonl, model_answer/<model>.jsonl (one per setting and
replicate, and the baseline) and model_judgment/<judge>_pair.jsonl (each setting and replicate
as model_1 against the baseline as model_2, g1 with model_1 shown first, g2 swapped, winners named
from model_1's side as FastChat does). AlpacaEval: <model>/model_outputs.json and, per judge,
<model>/annotations_<judge>.json with the baseline as output_1 (AlpacaEval's reference side) and
preference 2 where our answer won, 1 where it lost, 1.5 for a tie, null for an unreadable
verdict. Model names are <setting>-rep<r>; answer ids are stable hashes, and no time stamps are
written, so that a rerun writes the same bytes."""

import hashlib
import json
from pathlib import Path

from huatuo_study.common import atomic_dir, log, read_jsonl, run_stage

BASELINE = "baseline"
CATEGORY = "medical"
# FastChat's winner for each of our labels, by who was shown first (Assistant 1).
FIRST_SHOWN_WINNER = {
    "setting_first": {"better": "model_1", "worse": "model_2", "equal": "tie", None: "error"},
    "baseline_first": {"better": "model_2", "worse": "model_1", "equal": "tie", None: "error"},
}
PREFERENCE = {"win": 2, "loss": 1, "tie": 1.5, "invalid": None}


def model_id(setting: str, replicate: int) -> str:
    return f"{setting}-rep{replicate}"


def fastchat_question(test: dict) -> dict:
    return {"question_id": test["id"], "category": CATEGORY, "turns": [test["question"]]}


def fastchat_answer(model: str, record: dict) -> dict:
    answer_id = hashlib.sha256(f"{model}:{record['id']}".encode()).hexdigest()[:22]
    return {
        "question_id": record["id"],
        "answer_id": answer_id,
        "model_id": model,
        "choices": [{"index": 0, "turns": [record["answer"]]}],
    }


def fastchat_judgment(verdict: dict, model: str, judge: str) -> dict:
    """Our two orders as FastChat's g1 (model_1 first) and g2 (model_2 first), with each order's
    last reply (after a retry, the one that counted)."""
    orders = {o["order"]: o for o in verdict["orders"]}
    row = {"question_id": verdict["id"], "model_1": model, "model_2": BASELINE}
    for game, order in (("g1", "setting_first"), ("g2", "baseline_first")):
        row[f"{game}_winner"] = FIRST_SHOWN_WINNER[order][orders[order].get("label")]
    row["judge"] = [judge, "pair"]
    for game, order in (("g1", "setting_first"), ("g2", "baseline_first")):
        calls = orders[order].get("calls") or [{"reply": None}]
        row[f"{game}_judgment"] = calls[-1]["reply"]
    row["turn"] = 1
    return row


def alpaca_output(record: dict, generator: str, dataset: str) -> dict:
    return {"instruction": record["question"], "output": record["answer"], "generator": generator, "dataset": dataset}


def alpaca_annotation(verdict: dict, generator: str, annotator: str) -> dict:
    return {
        "instruction": verdict["question"],
        "output_1": verdict["baseline_answer"],
        "generator_1": BASELINE,
        "output_2": verdict["setting_answer"],
        "generator_2": generator,
        "annotator": annotator,
        "preference": PREFERENCE[verdict["verdict"]],
    }


def dump_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def dump_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def write_interchange(
    out: Path,
    test_set: str,
    test: list[dict],
    baseline: list[dict],
    answers: dict[str, list[dict]],
    verdicts: dict[str, dict[str, list[dict]]],
) -> None:
    """answers: model -> answer records; verdicts: judge -> model -> verdict records."""
    fastchat, alpaca = out / "fastchat", out / "alpaca_eval"
    dump_jsonl(fastchat / "question.jsonl", [fastchat_question(t) for t in test])
    for model, records in {BASELINE: baseline, **answers}.items():
        dump_jsonl(fastchat / "model_answer" / f"{model}.jsonl", [fastchat_answer(model, r) for r in records])
        dump_json(alpaca / model / "model_outputs.json", [alpaca_output(r, model, test_set) for r in records])
    for judge, by_model in verdicts.items():
        dump_jsonl(
            fastchat / "model_judgment" / f"{judge}_pair.jsonl",
            [fastchat_judgment(v, model, judge) for model, rows in by_model.items() for v in rows],
        )
        for model, rows in by_model.items():
            dump_json(alpaca / model / f"annotations_{judge}.json", [alpaca_annotation(v, model, judge) for v in rows])


def main(smk):
    p = smk.params
    runs = [(s, r) for s in p.settings for r in range(p.replicates)]  # the rule's inputs' order
    answers = {model_id(s, r): read_jsonl(path) for (s, r), path in zip(runs, smk.input.answers)}
    verdict_files = iter(smk.input.verdicts)
    verdicts = {j: {model_id(s, r): read_jsonl(next(verdict_files)) for s, r in runs} for j in p.judges}
    with atomic_dir(smk.output.folder) as tmp:
        write_interchange(
            tmp, smk.wildcards.test_set, read_jsonl(smk.input.test), read_jsonl(smk.input.baseline), answers, verdicts
        )
    log.info(
        "Wrote FastChat and AlpacaEval files of %d models and %d judges to %s",
        len(answers) + 1,
        len(verdicts),
        smk.output.folder,
    )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
