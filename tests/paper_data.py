"""The paper tests' run: a config, the win-rate and paired-test tables, answers, stats and
provenance of four settings, with LaTeX specials and Chinese in the data (test_paper_*.py)."""

import json
import math
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

import fidelity_table
import provenance
from common import read_prompt
from conftest import REPO
from figure_style import APT_PACKAGES
from paper_context import paper_context

SPECIAL = "50% 的 A&B_C #1 {x} ~ ^ \\"
SPECIAL_ESCAPED = r"50\% 的 A\&B\_C \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}"

QUESTIONS = [
    "高血压患者平时饮食需要注意什么？",
    "糖尿病的早期症状有哪些？",
    "请描述一下病毒性感染的传播途径以及如何防止传播？",
    "儿童发烧38度需要去医院吗？",
]
SETTINGS = ("setting1", "setting2", "setting3", "setting4")
JUDGE_PROMPT = REPO / "config" / "judge_prompt.txt"
STUDY_PROMPT_START = "We would like to request your feedback on the two AI assistants"

HAS_TEX = all(shutil.which(tool) for tool in ("xelatex", "latexmk", "pdftotext"))
NO_TEX = f"xelatex/latexmk/pdftotext not installed (apt-get install {APT_PACKAGES} poppler-utils)"
needs_xelatex = pytest.mark.skipif(not HAS_TEX, reason=NO_TEX)


def study_config():
    """The study's config as the paper rules get it (less recipes), with LaTeX specials in a title."""
    with open(REPO / "config" / "config.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg.pop("recipes")  # as rules/common.smk's RUN_CONFIG leaves it out
    cfg["settings"]["setting3"]["title"] = SPECIAL
    return cfg


@pytest.fixture
def config():
    return study_config()


# --------------------------------------------------------------------------- fixture numbers


def wilson(k, n, z=1.959963984540054):
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return center - half, center + half


def sign_test(a, b):
    m = a + b
    return min(1.0, 2 * sum(math.comb(m, i) for i in range(min(a, b) + 1)) / 2 ** m) if m else 1.0


PUBLISHED_P = {"setting1": 1.0, "setting2": 1.0, "setting3": 0.49, "setting4": 0.62}


def winrate_rows():
    """The winrate.json interface of rule winrate_table: exactly its columns."""
    def row(setting, title, wins, ties, losses, invalid=0, cost=0.12):
        n = wins + ties + losses + invalid
        low, high = wilson(wins, n)
        published = {"setting1": 0.75, "setting2": 0.9, "setting3": 0.8, "setting4": 0.8}[setting]
        return {"setting": setting, "title": title, "n": n, "wins": wins, "ties": ties, "losses": losses,
                "invalid": invalid, "win_rate": wins / n, "win_rate_ties_half": (wins + ties / 2) / n,
                "ci_low": low, "ci_high": high, "p_value": sign_test(wins, losses), "consistency": 0.85,
                "win_rate_as_first": min(1.0, (wins + 1) / n), "win_rate_as_second": (wins - 1) / n,
                "order_flip_share": 0.1, "order_flips": 2,
                "mean_answer_chars": 180.4 + wins, "baseline_mean_answer_chars": 240.6,
                "prompt_tokens": 21000 + n, "completion_tokens": 5000, "judge_calls": 2 * n, "cost_usd": cost,
                "published_win_rate": published, "published_wins": round(20 * published), "published_n": 20,
                "published_p_value": PUBLISHED_P[setting]}

    return [
        row("setting1", "Baseline recipe (Qwen3-4B)", 15, 2, 3),
        row("setting2", "Scaling (Qwen3-14B)", 18, 1, 1),
        row("setting3", SPECIAL, 13, 1, 5, invalid=1),
        row("setting4", "Training tricks (Qwen3-4B)", 2, 0, 1, cost=None),
    ]


def pairwise_rows():
    """The pairwise.csv interface: settings a/b, questions judged for both, discordant counts."""
    def row(a, b, n, a_better, b_better):
        return {"setting_a": a, "setting_b": b, "n": n, "a_better": a_better, "b_better": b_better,
                "p_value": sign_test(a_better, b_better)}

    return [row("setting1", "setting2", 20, 1, 4), row("setting1", "setting3", 20, 3, 2),
            row("setting1", "setting4", 3, 1, 0), row("setting2", "setting3", 20, 6, 0),
            row("setting2", "setting4", 3, 2, 0), row("setting3", "setting4", 3, 1, 1)]


EXPECTED_PCT = {"setting1": "75.0", "setting2": "90.0", "setting3": "65.0", "setting4": "66.7"}
PUBLISHED = {"setting1": "75.0", "setting2": "90.0", "setting3": "80.0", "setting4": "80.0"}


def table_cells(row):
    """What Table 1 shows for a winrate row, formatted as the paper formats it."""
    p = row["p_value"]
    return [str(row["n"]), str(row["wins"]), str(row["ties"]), str(row["losses"]), f"{100 * row['win_rate']:.1f}",
            f"[{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]", "<0.001" if p < 0.001 else f"{p:.3f}"]


def sample_records():
    test = [{"id": f"q{i:03d}", "question": q, "reference": "参考答案"} for i, q in enumerate(QUESTIONS, 1)]
    baseline = [{"id": r["id"], "question": r["question"], "answer": "基线回答：" + "多喝水，" * 100} for r in test]
    generations = {  # setting k's first k-1 answers stopped at the token limit
        s: [{"id": r["id"], "question": r["question"], "answer": f"{s} 的回答\n\n第二段 {SPECIAL}\x07",
             "hit_token_limit": i < k} for i, r in enumerate(test)]
        for k, s in enumerate(SETTINGS)
    }
    return test, baseline, generations


SPLIT_STATS = {"n_raw": 500, "n_kept": 500, "dropped": {"malformed": 0, "duplicate_question": 0},
               "n_train": 400, "n_val": 50, "n_heldout": 50, "n_unused": 0, "seed": 42}
AUGMENT_STATS = {"method": "llm", "ratio": 0.3, "seed": 42, "n_train": 400, "n_selected": 120, "n_augmented": 118,
                 "n_unaugmented": 2, "unaugmented_reasons": {"empty": 1, "length": 1},
                 "usage": {"model": "deepseek-chat", "calls": 122}}
STUDY = yaml.safe_load((REPO / "config" / "study.yaml").read_text(encoding="utf-8"))
LEAKAGE = {"ngram": 2, "num_perm": 128, "threshold": 0.5, "stop_threshold": 0.9, "n_test": 4,
           "n_compared": {"train": 400, "val": 100}, "n_pairs": 1, "n_test_with_near_duplicate": 1,
           "closest": [{"test_id": "q001", "split": "train", "id": 17, "jaccard": 0.6667,
                        "test_question": "高血压患者平时饮食需要注意什么？",
                        "question": "高血压患者平时的饮食需要注意些什么？"}]}


def fidelity_rows(config):
    """The fidelity.csv interface, as rule fidelity_table writes it for this config."""
    return fidelity_table.fidelity_table(STUDY, config).to_dict(orient="records")


def fake_provenance():
    return {
        "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True},
        "config_sha256": "ab" * 32,
        "packages": {name: "1.0" for name in provenance.PACKAGES},
        "python": "3.11.7",
        "xelatex": "XeTeX 3.14",
        "devices": {s: "NVIDIA H100 80GB HBM3" for s in SETTINGS},
        "data": {"source": "FreedomIntelligence/Huatuo26M-Lite", "revision": "main", "raw_sha256": "cd" * 32},
        "models": {"qwen3-4b": "1cfa9a7208912126459214e8b04321603b3df60c", "qwen3-14b": "8268fe3026cb304910457689366670e803a6fd56"},
        "dates": {"raw data read": "2025-11-20 10:00 UTC", "paper rendered": "2025-11-21 09:00 UTC"},
        "judge": {"backend": "openai", "model": "gpt-4o", "endpoint": "https://api.openai.com/v1", "temperature": 0.0,
                  "judge_calls": 86, "prompt_tokens": 84086, "completion_tokens": 20000, "cost_usd": 0.36},
    }


def make_context(config, **overrides):
    test, baseline, generations = sample_records()
    kwargs = dict(config=config, winrate=winrate_rows(), pairwise=pairwise_rows(), split_stats=SPLIT_STATS,
                  test=test, baseline=baseline, generations=generations, provenance=fake_provenance(),
                  judge_prompt=read_prompt(JUDGE_PROMPT), fidelity=fidelity_rows(config),
                  augment_stats=AUGMENT_STATS, leakage=LEAKAGE)
    kwargs.update(overrides)
    return paper_context(**kwargs)


def loss_frame(n_steps=20, val_every=5, with_val=True):
    rows = [{"step": s, "epoch": s / n_steps, "split": "train", "loss": 3.0 / s} for s in range(1, n_steps + 1)]
    if with_val:
        rows += [{"step": s, "epoch": s / n_steps, "split": "val", "loss": 3.2 / s}
                 for s in range(val_every, n_steps + 1, val_every)]
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "loss"])


def pdftotext(path, layout=False):
    args = ["pdftotext", "-enc", "UTF-8", *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def squash(text):
    return "".join(text.split())


def write_run_files(folder: Path, config) -> dict:
    """The inputs of rule paper_context as run-like files under `folder`, by input name."""
    test, baseline, generations = sample_records()

    def write(name, text):
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        return str(p)

    def jsonl(name, records):
        return write(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    return {
        "winrate": write("winrate.json", json.dumps(winrate_rows(), ensure_ascii=False)),
        "pairwise": write("pairwise.csv", pd.DataFrame(pairwise_rows()).to_csv(index=False)),
        "split_stats": write("split_stats.json", json.dumps(SPLIT_STATS)),
        "raw": jsonl("raw.jsonl", test), "test": jsonl("test.jsonl", test),
        "baseline": jsonl("baseline.jsonl", baseline),
        "fidelity": write("fidelity.csv", pd.DataFrame(fidelity_rows(config)).to_csv(index=False)),
        "augment_stats": [write("augment_stats.json", json.dumps(AUGMENT_STATS))],
        "near_duplicates": write("near_duplicates.json", json.dumps(LEAKAGE, ensure_ascii=False)),
        "generations": [jsonl(f"gen_{s}.jsonl", generations[s]) for s in SETTINGS],
        "train_stats": [write(f"train_stats/{s}.json", json.dumps({"device": "cpu"})) for s in SETTINGS],
        "models": [write(f"models/{m}/manifest.json", json.dumps({"source": m, "revision": "r1"}))
                   for m in ("qwen3-4b", "qwen3-14b")],
        "judge_prompt": str(JUDGE_PROMPT),
    }
