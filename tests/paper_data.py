"""The paper tests' run: the study's config scaled to a fixture (6 settings: 4 trained and 2
untuned controls; 2 replicates; the test sets course and heldout; the judges primary and gpt-4o),
the win-rate, paired-test, claims and agreement tables, answers, stats and provenance, with LaTeX
specials and Chinese in the data (test_paper_*.py)."""

import json
import math
import shutil
import statistics
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

import claims_table
import compute_table
import fidelity_table
from conftest import REPO
from huatuo_study import run_plan
from huatuo_study.common import read_prompt
from huatuo_study.paper import provenance
from huatuo_study.paper.figure_style import APT_PACKAGES
from huatuo_study.run_plan import FIGURES
from paper_context import paper_context

SPECIAL = "50% 的 A&B_C #1 {x} ~ ^ \\"
SPECIAL_ESCAPED = r"50\% 的 A\&B\_\allowbreak{}C \#1 \{x\} \textasciitilde{} \textasciicircum{} \textbackslash{}"

# The first four questions of the course test set (the case study is question 3).
QUESTIONS = [
    "高血压患者平时饮食需要注意什么？",
    "糖尿病的早期症状有哪些？",
    "请描述一下病毒性感染的传播途径以及如何防止传播？",
    "儿童发烧38度需要去医院吗？",
]
TOPICS = [
    "感冒",
    "胃痛",
    "失眠",
    "咳嗽",
    "过敏性鼻炎",
    "腰椎间盘突出",
    "贫血",
    "痛风",
    "偏头痛",
    "湿疹",
    "便秘",
    "甲状腺结节",
    "脂肪肝",
    "口腔溃疡",
    "颈椎病",
    "痔疮",
]
COURSE_QUESTIONS = QUESTIONS + [f"{topic}应该怎么治疗和预防？" for topic in TOPICS]  # the study's 20
HELDOUT_QUESTIONS = [f"{topic}患者可以运动吗？" for topic in TOPICS[:8]]  # a held-out slice of 8

TRAINED = ("setting1", "setting2", "setting3", "setting4")
CONTROLS = ("control-4b", "control-14b")  # the study config's untuned controls, after the trained settings
SETTINGS = TRAINED + CONTROLS
CONTROL_OF = {"setting1": "control-4b", "setting2": "control-14b"}  # the control of each setting's base model
REPLICATES = 2
TEST_SETS = ("course", "heldout")  # the first is the headline
JUDGES = ("primary", "gpt-4o")
SIZES = {"course": len(COURSE_QUESTIONS), "heldout": len(HELDOUT_QUESTIONS)}
TITLES = {
    "setting1": "Baseline recipe (Qwen3-4B)",
    "setting2": "Scaling (Qwen3-14B)",
    "setting3": SPECIAL,
    "setting4": "Training tricks (Qwen3-4B)",
    "control-4b": "Untuned control (Qwen3-4B)",
    "control-14b": "Untuned control (Qwen3-14B)",
}

JUDGE_PROMPT = REPO / "config" / "judge_prompt.txt"
STUDY_PROMPT_START = "We would like to request your feedback on the two AI assistants"

HAS_TEX = all(shutil.which(tool) for tool in ("xelatex", "latexmk", "pdftotext"))
NO_TEX = f"xelatex/latexmk/pdftotext not installed (apt-get install {APT_PACKAGES} poppler-utils)"
needs_xelatex = pytest.mark.skipif(not HAS_TEX, reason=NO_TEX)


def study_config():
    """The study's config as the paper rules get it (run_plan.run_config: less recipes and
    the card's memory), with 2 replicates, a held-out test set of 8 questions, and LaTeX specials
    in a title."""
    with open(REPO / "config" / "config.yaml", encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    cfg.pop("recipes")
    cfg.pop("gpu_memory_gib")
    cfg.pop("training_processes")
    cfg["replicates"] = REPLICATES
    cfg["test_sets"]["heldout"]["n"] = SIZES["heldout"]
    cfg["settings"]["setting3"]["title"] = SPECIAL
    assert tuple(cfg["settings"]) == SETTINGS and tuple(cfg["test_sets"]) == TEST_SETS
    assert ("primary", *cfg["judge_panel"]) == JUDGES
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
    return max(0.0, center - half), min(1.0, center + half)  # as scipy clips it


def sign_test(a, b):
    m = a + b
    return min(1.0, 2 * sum(math.comb(m, i) for i in range(min(a, b) + 1)) / 2**m) if m else 1.0


STUDY = yaml.safe_load((REPO / "config" / "study.yaml").read_text(encoding="utf-8"))
PUBLISHED_RATE = STUDY["published"]["win_rates"]  # settings 1-4; the study had no controls
# Ours in the study's order against the published rate (winrate_table.published_comparison): the
# score (each question once), the 95% half-width of the difference, equivalent within +-15 points?
# and the TOST p-value.
PUBLISHED_COMPARISON = {
    "setting1": (0.725, 0.27, False, 0.412),
    "setting2": (0.925, 0.10, True, 0.031),
    "setting3": (0.625, 0.28, False, 0.612),
    "setting4": (0.575, 0.29, False, 0.830),
}
PUBLISHED_NONE = {
    "published_win_rate": None,
    "published_difference": None,
    "published_difference_low": None,
    "published_difference_high": None,
    "published_margin": None,
    "published_equivalent": None,
    "published_equivalence_p": None,
}


def published_columns(setting, published):
    """The published-comparison columns of a winrate row (none where nothing is compared)."""
    if published is None:
        return PUBLISHED_NONE
    _, half, equivalent, p = PUBLISHED_COMPARISON[setting]
    d = PUBLISHED_COMPARISON[setting][0] - published
    return {
        "published_win_rate": published,
        "published_difference": d,
        "published_difference_low": d - half,
        "published_difference_high": d + half,
        "published_margin": 0.15,
        "published_equivalent": equivalent,
        "published_equivalence_p": p,
    }


# Per table (test set, judge) and setting: each replicate's wins, ties, losses, invalid, and the
# length-controlled win rate (None: not fitted, as when every verdict is a win).
TABLES = {
    ("course", "primary"): {
        "setting1": ((16, 14), 1, 9, 0, 0.712),
        "setting2": ((19, 17), 2, 2, 0, 0.874),
        "setting3": ((13, 11), 1, 14, 1, 0.583),
        "setting4": ((12, 10), 4, 14, 0, 0.561),
        "control-4b": ((6, 4), 6, 24, 0, 0.268),
        "control-14b": ((8, 7), 5, 20, 0, 0.362),
    },
    ("course", "gpt-4o"): {
        "setting1": ((15, 14), 3, 8, 0, 0.703),
        "setting2": ((18, 18), 1, 3, 0, 0.881),
        "setting3": ((12, 12), 2, 14, 0, 0.571),
        "setting4": ((11, 11), 3, 15, 0, 0.534),
        "control-4b": ((5, 5), 5, 25, 0, 0.243),
        "control-14b": ((7, 8), 4, 21, 0, 0.372),
    },
    ("heldout", "primary"): {
        "setting1": ((6, 5), 1, 4, 0, 0.662),
        "setting2": ((7, 7), 1, 1, 0, 0.851),
        "setting3": ((5, 4), 2, 5, 0, 0.549),
        "setting4": ((3, 2), 2, 9, 0, 0.304),
        "control-4b": ((2, 1), 3, 10, 0, 0.203),
        "control-14b": ((3, 3), 2, 8, 0, 0.358),
    },
    ("heldout", "gpt-4o"): {  # setting 3's replicates differ most: 3 and 6 of 8, 37.5 points
        "setting1": ((6, 6), 0, 4, 0, 0.741),
        "setting2": ((8, 8), 0, 0, 0, None),
        "setting3": ((3, 6), 1, 6, 0, 0.552),
        "setting4": ((3, 3), 1, 9, 0, 0.371),
        "control-4b": ((1, 2), 2, 11, 0, 0.194),
        "control-14b": ((3, 4), 2, 7, 0, 0.431),
    },
}
WIDEST_SPREAD = ("setting3", "heldout", "gpt-4o", "37.5")  # the seed-noise sentence's


def winrate_row(setting, test_set="course", judge="primary"):
    """A winrate.json row as rule winrate_table writes it (exactly its columns): the replicates
    pooled, n = questions x replicates."""
    rep_wins, ties, losses, invalid, lc = TABLES[test_set, judge][setting]
    questions = SIZES[test_set]
    n, wins = questions * len(rep_wins), sum(rep_wins)
    assert wins + ties + losses + invalid == n, (test_set, judge, setting)
    low, high = wilson(wins, n)
    rates = [w / questions for w in rep_wins]
    published = PUBLISHED_RATE.get(setting) if (test_set, judge) == ("course", "primary") else None
    return {
        "setting": setting,
        "title": TITLES[setting],
        "n": n,
        "wins": wins,
        "ties": ties,
        "losses": losses,
        "invalid": invalid,
        "win_rate": wins / n,
        "win_rate_ties_half": (wins + ties / 2) / n,
        "ci_low": low,
        "ci_high": high,
        "p_value": sign_test(wins, losses),
        "consistency": 0.85,
        "win_rate_as_first": min(1.0, (wins + 1) / n),
        "win_rate_as_second": (wins - 1) / n,
        "order_flips": 4,
        "order_flip_share": 0.1,
        "study_order_score": (wins + ties / 2) / n if published is None else PUBLISHED_COMPARISON[setting][0],
        **published_columns(setting, published),
        "mean_answer_chars": 180.4 + wins,
        "baseline_mean_answer_chars": 240.6,
        "prompt_tokens": 21000 + n,
        "completion_tokens": 5000,
        "judge_calls": 2 * n,
        "cost_usd": None if setting == "setting4" else 0.12,  # setting 4's judge had no prices
        "replicates": len(rep_wins),
        "replicate_win_rate_min": min(rates),
        "replicate_win_rate_max": max(rates),
        "replicate_win_rate_sd": statistics.stdev(rates),
        "lc_win_rate": lc,
        "lc_ci_low": None if lc is None else lc - 0.15,
        "lc_ci_high": None if lc is None else min(1.0, lc + 0.15),
        "lc_note": "the fit separates (no finite estimate: e.g. every verdict one way)" if lc is None else None,
    }


def winrate_rows(test_set="course", judge="primary"):
    """The winrate.json of one test set by one judge; by default the headline's."""
    return [winrate_row(s, test_set, judge) for s in SETTINGS]


def all_winrates():
    """paper_context's `winrates`: every test set's table by every judge, test sets first."""
    return {(t, j): winrate_rows(t, j) for t in TEST_SETS for j in JUDGES}


def pairwise_rows():
    """The pairwise.csv interface: every pair in config order, replicate r paired with replicate r
    on the 20 course questions (n 40), discordant counts."""

    def row(a, b, a_better, b_better):
        return {
            "setting_a": a,
            "setting_b": b,
            "n": 40,
            "a_better": a_better,
            "b_better": b_better,
            "p_value": sign_test(a_better, b_better),
        }

    counts = {
        ("setting1", "setting2"): (2, 8),
        ("setting1", "setting3"): (9, 3),
        ("setting1", "setting4"): (8, 4),
        ("setting1", "control-4b"): (22, 2),
        ("setting1", "control-14b"): (17, 2),
        ("setting2", "setting3"): (10, 1),
        ("setting2", "setting4"): (9, 3),
        ("setting2", "control-4b"): (26, 0),
        ("setting2", "control-14b"): (21, 0),
        ("setting3", "setting4"): (5, 3),
        ("setting3", "control-4b"): (16, 2),
        ("setting3", "control-14b"): (12, 3),
        ("setting4", "control-4b"): (14, 2),
        ("setting4", "control-14b"): (10, 3),
        ("control-4b", "control-14b"): (3, 8),
    }
    return [row(a, b, *counts[a, b]) for i, a in enumerate(SETTINGS) for b in SETTINGS[i + 1 :]]


EXPECTED_PCT = {
    "setting1": "75.0",
    "setting2": "90.0",
    "setting3": "60.0",
    "setting4": "55.0",
    "control-4b": "25.0",
    "control-14b": "37.5",
}
PUBLISHED = {
    "setting1": "75.0",
    "setting2": "90.0",
    "setting3": "80.0",
    "setting4": "80.0",
    "control-4b": "--",
    "control-14b": "--",
}


def table_cells(row):
    """What Table 1 shows for a winrate row, formatted as the paper formats it (n, questions x
    replicates, is in its caption)."""
    p = row["p_value"]
    return [
        str(row["wins"]),
        str(row["ties"]),
        str(row["losses"]),
        f"{100 * row['win_rate']:.1f}",
        f"[{100 * row['ci_low']:.1f}, {100 * row['ci_high']:.1f}]",
        "<0.001" if p < 0.001 else f"{p:.3f}",
    ]


# The claims tables (claims.json, claim_stats.COLUMNS), by test set, of the primary judge: per
# claim of config/study.yaml, our effect and 95% interval, p, Holm's p over the table, the power
# of the procedure at the published effect and the n for 80% (none where the study has no
# effect: the controls), and the verdict. The corrected interval is the 95% one widened by 5
# points each way; the reading names the verdict. Effects agree with TABLES.
CLAIM_STATS = {
    "course": {
        "scaling": (0.15, -0.025, 0.325, 0.031, 0.155, 0.2273, 99, "inconclusive"),
        "augmentation": (-0.15, -0.375, 0.075, 0.21, 0.63, 0.0650, 1093, "inconclusive"),
        "training_tricks": (-0.2, -0.425, 0.025, 0.068, 0.272, 0.0650, 1093, "inconclusive"),
        "beats_baseline_1": (0.25, 0.075, 0.4, 0.0011, 0.0066, 0.6879, 26, "supported"),
        "beats_baseline_2": (0.4, 0.275, 0.5, 0.00002, 0.00018, 0.9999, 7, "supported"),
        "beats_baseline_3": (0.1, -0.125, 0.3, 0.35, 0.7, 0.8888, 16, "inconclusive"),
        "beats_baseline_4": (0.05, -0.175, 0.25, 0.62, 0.7, 0.8888, 16, "inconclusive"),
        "sft_effective_4b": (0.5, 0.3, 0.675, 0.00004, 0.00028, None, None, "supported"),
        "sft_effective_14b": (0.525, 0.35, 0.7, 0.00003, 0.00024, None, None, "supported"),
        "scaling_over_augmentation": (0.3, 0.05, 0.5, 0.02, 0.1, 0.3, 160, "inconclusive"),
        "scaling_over_tricks": (0.35, 0.15, 0.55, 0.002, 0.016, 0.3, 160, "supported"),
    },
    "heldout": {
        "scaling": (0.1875, -0.125, 0.5, 0.25, 0.75, 0.1078, 99, "inconclusive"),
        "augmentation": (-0.125, -0.4375, 0.1875, 0.45, 0.9, 0.0550, 1093, "inconclusive"),
        "training_tricks": (-0.375, -0.625, -0.125, 0.0009, 0.0081, 0.0550, 1093, "contradicted"),
        "beats_baseline_1": (0.1875, -0.0625, 0.4375, 0.11, 0.55, 0.2927, 26, "inconclusive"),
        "beats_baseline_2": (0.375, 0.1875, 0.5, 0.0021, 0.0126, 0.8964, 7, "supported"),
        "beats_baseline_3": (0.0625, -0.25, 0.3125, 0.69, 0.9, 0.4486, 16, "inconclusive"),
        "beats_baseline_4": (-0.1875, -0.4375, 0.0625, 0.16, 0.64, 0.4486, 16, "inconclusive"),
        "sft_effective_4b": (0.5, 0.25, 0.6875, 0.0012, 0.0096, None, None, "supported"),
        "sft_effective_14b": (0.5, 0.25, 0.6875, 0.0015, 0.0105, None, None, "supported"),
        "scaling_over_augmentation": (0.3125, 0.0625, 0.5625, 0.03, 0.12, 0.3, 160, "inconclusive"),
        "scaling_over_tricks": (0.15, 0.02, 0.28, 0.01, 0.08, 0.3, 160, "reproduced"),
    },
}


def claims_rows(test_set="course"):
    """claims.json of a test set by the primary judge: the study's claims as claims_table.py
    resolves them (the control of the setting's base model, the published effects), with the
    statistics above."""
    rates = {s: rate for s, rate in PUBLISHED_RATE.items()}
    rows = []
    for claim in claims_table.resolve_claims(STUDY["claims"], rates, CONTROL_OF):
        effect, low, high, p, p_holm, power, n80, verdict = CLAIM_STATS[test_set][claim["id"]]
        published = claim["published_effect"]
        rows.append(
            {
                "id": claim["id"],
                "claim": claim["claim"],
                "source": claim["source"],
                "setting": claim["setting"],
                "against": claim["against"],
                "n": SIZES[test_set],
                "replicates": REPLICATES,
                "published_effect": published,
                "effect": effect,
                "ci_low": low,
                "ci_high": high,
                "published_in_ci": None if published is None else low <= published <= high,
                "p_value": p,
                "p_holm": p_holm,
                "holm_level": 0.05,
                "ci_holm_low": low - 0.05,
                "ci_holm_high": high + 0.05,
                "margin": 0.15,
                "power": power,
                "n_for_80_power": n80,
                "verdict": verdict,
                "reading": f"fixture reading of {claim['id']}, {verdict}",
            }
        )
    return rows


def all_claims():
    return {t: claims_rows(t) for t in TEST_SETS}


def agreement_rows():
    """tables/judge_agreement.csv: the primary judge against gpt-4o on each test set's verdicts
    (6 settings x 2 replicates x its questions; the pair with an invalid verdict dropped)."""
    return [
        {
            "test_set": "course",
            "judge_a": "primary",
            "judge_b": "gpt-4o",
            "n_questions": 20,
            "n_pairs": 239,
            "agreement": 0.72,
            "weighted_kappa": 0.58,
            "weighted_kappa_low": 0.49,
            "weighted_kappa_high": 0.67,
            "alpha": 0.57,
            "alpha_low": 0.47,
            "alpha_high": 0.66,
        },
        {
            "test_set": "heldout",
            "judge_a": "primary",
            "judge_b": "gpt-4o",
            "n_questions": 8,
            "n_pairs": 96,
            "agreement": 0.64,
            "weighted_kappa": 0.44,
            "weighted_kappa_low": 0.29,
            "weighted_kappa_high": 0.59,
            "alpha": 0.41,
            "alpha_low": 0.25,
            "alpha_high": 0.58,
        },
    ]


def calibration_rows():
    """tables/calibration.csv of the fixture run: 2 replicates, the test sets' sizes."""
    return [
        {
            "test_set": t,
            "questions": SIZES[t],
            "replicates": REPLICATES,
            "coverage_0.5": 0.97,
            "coverage_0.75": 0.96,
            "coverage_0.9": 0.95,
            "coverage_difference": 0.98,
            "family_wise_error": 0.004,
            "studies": 400,
        }
        for t in TEST_SETS
    ]


def questions_of(test_set):
    if test_set == "course":
        return [{"id": f"q{i:03d}", "question": q, "reference": "参考答案"} for i, q in enumerate(COURSE_QUESTIONS, 1)]
    return [{"id": f"h{i:03d}", "question": q, "reference": "参考答案"} for i, q in enumerate(HELDOUT_QUESTIONS, 1)]


def answer(setting, replicate):
    """A bell (a control character) and U+FFFD (a byte-level token decoded mid-character) as
    models emit them."""
    return f"{setting} 第{replicate}轮的回答\n\n第二段 {SPECIAL}\x07\ufffd"


def sample_records():
    """The test sets by name (course first), the course baseline's answers, and each setting's
    replicates' answers on the course set: replicate r of the k-th setting (from 0) stopped at the
    token limit on its first k + r questions."""
    tests = {t: questions_of(t) for t in TEST_SETS}
    course = tests["course"]
    baseline = [{"id": r["id"], "question": r["question"], "answer": "基线回答：" + "多喝水，" * 100} for r in course]
    generations = {
        s: [
            [
                {"id": q["id"], "question": q["question"], "answer": answer(s, r), "hit_token_limit": i < k + r}
                for i, q in enumerate(course)
            ]
            for r in range(REPLICATES)
        ]
        for k, s in enumerate(SETTINGS)
    }
    return tests, baseline, generations


SPLIT_STATS = {
    "n_raw": 500,
    "n_kept": 500,
    "dropped": {"malformed": 0, "duplicate_question": 0},
    "n_train": 400,
    "n_val": 50,
    "n_heldout": 50,
    "n_unused": 0,
    "seed": 42,
}
AUGMENT_STATS = {
    "method": "llm",
    "ratio": 0.3,
    "seed": 42,
    "n_train": 400,
    "n_selected": 120,
    "n_augmented": 118,
    "n_unaugmented": 2,
    "unaugmented_reasons": {"empty": 1, "length": 1},
    "usage": {"model": "deepseek-chat", "calls": 122},
}
LEAKAGE = {  # data/near_duplicates/<test set>.json
    "course": {
        "ngram": 2,
        "num_perm": 128,
        "threshold": 0.5,
        "stop_threshold": 0.9,
        "n_test": 20,
        "n_compared": {"train": 400, "val": 100},
        "n_pairs": 1,
        "n_test_with_near_duplicate": 1,
        "closest": [
            {
                "test_id": "q001",
                "split": "train",
                "id": 17,
                "jaccard": 0.6667,
                "test_question": "高血压患者平时饮食需要注意什么？",
                "question": "高血压患者平时的饮食需要注意些什么？",
            }
        ],
    },
    "heldout": {
        "ngram": 2,
        "num_perm": 128,
        "threshold": 0.5,
        "stop_threshold": 0.9,
        "n_test": 8,
        "n_compared": {"train": 400, "val": 100},
        "n_pairs": 0,
        "n_test_with_near_duplicate": 0,
        "closest": [],
    },
}


def fidelity_rows(config):
    """The fidelity.csv interface, as rule fidelity_table writes it for this config."""
    return fidelity_table.fidelity_table(STUDY, config).to_dict(orient="records")


# What the stages record under `versions` (versions.py), as in envs/train.yaml and envs/data.yaml.
TRAIN_VERSIONS = {
    "python": "3.11.7",
    "torch": "2.13.0",
    "transformers": "5.23.0",
    "peft": "0.21.2",
    "trl": "1.16.0",
    "bitsandbytes": "0.50.2",
    "accelerate": "1.15.0",
    "datasets": "5.2.0",
}
MODEL_VERSIONS = {
    "python": "3.11.7",
    "torch": "2.13.0",
    "transformers": "5.23.0",
    "tokenizers": "0.23.3",
    "huggingface_hub": "1.4.0",
}
AUGMENT_VERSIONS = {"python": "3.11.7", "openai": "3.51.0"}


def compute_rows():
    """tables/compute.csv's rows: every training replicate, then every test set's answers by every
    setting and replicate, on an H100; wall times and tokens/s differ by job, then the total row."""
    jobs = [
        {"rule": "train_adapter", "test_set": None, "setting": s, "replicate": r}
        for s in TRAINED
        for r in range(REPLICATES)
    ]
    jobs += [
        {"rule": "generate_answers", "test_set": t, "setting": s, "replicate": r}
        for t in TEST_SETS
        for s in SETTINGS
        for r in range(REPLICATES)
    ]
    rows = [
        {
            **job,
            "device": "NVIDIA H100 80GB HBM3",
            "gpu": str(i % 2),
            "wall_s": 600.5 + i,
            "max_rss_mib": 9000.0 + i,
            "peak_gpu_gib": 20.25,
            "tokens_per_s": 1500.0 + i,
        }
        for i, job in enumerate(jobs)
    ]
    return rows + [compute_table.total_row(rows)]


def fake_provenance():
    """provenance.collect's shape: devices of the trained settings only (controls train nothing),
    the versions each stage recorded and the paper's own (1.0), the judge's usage summed over the
    headline table."""
    usage = provenance.judge_usage(winrate_rows())
    stages = provenance.STAGES
    return {
        "git": {"commit": "0123456789abcdef0123456789abcdef01234567", "dirty": True},
        "config_sha256": "ab" * 32,
        "versions": provenance.gather_versions(
            {
                stages["train"]: {
                    f"{s}/rep{r}": {"versions": TRAIN_VERSIONS} for s in TRAINED for r in range(REPLICATES)
                },
                stages["model"]: {m: {"versions": MODEL_VERSIONS} for m in ("qwen3-4b", "qwen3-14b")},
                stages["split"]: {None: {"versions": {"python": "3.11.7"}}},
                stages["augment"]: {None: {"versions": AUGMENT_VERSIONS}},
                stages["paper"]: {
                    None: {"versions": {"python": "3.11.7", **{name: "1.0" for name in provenance.PACKAGES}}}
                },
            }
        ),
        "xelatex": "XeTeX 3.14",
        "devices": {s: "NVIDIA H100 80GB HBM3" for s in TRAINED},
        "data": {"source": "FreedomIntelligence/Huatuo26M-Lite", "revision": "main", "raw_sha256": "cd" * 32},
        "models": {
            "qwen3-4b": "1cfa9a7208912126459214e8b04321603b3df60c",
            "qwen3-14b": "8268fe3026cb304910457689366670e803a6fd56",
        },
        "dates": {"raw data read": "2025-11-20 10:00 UTC", "paper rendered": "2025-11-21 09:00 UTC"},
        "judge": {
            "backend": "openai",
            "model": "gpt-3.5-turbo",
            "endpoint": "https://api.openai.com/v1",
            "temperature": 0.0,
            **usage,
        },
    }


# The headline ranking.json (bradley_terry.COLUMNS): a setting above the baseline, the baseline,
# a control below it, and a setting not run.
RANKING = [
    {
        "rank": 1,
        "setting": "setting2",
        "title": TITLES["setting2"],
        "score": 1120.4,
        "ci_low": 1010.2,
        "ci_high": 1231.0,
        "win_rate": 0.665,
        "n": 20,
        "replicates": 2,
        "note": "",
    },
    {
        "rank": 2,
        "setting": "baseline",
        "title": "baseline",
        "score": 1000.0,
        "ci_low": 1000.0,
        "ci_high": 1000.0,
        "win_rate": 0.5,
        "n": 20,
        "replicates": None,
        "note": "the baseline: anchored at 1000",
    },
    {
        "rank": 3,
        "setting": "control-4b",
        "title": TITLES["control-4b"],
        "score": 650.0,
        "ci_low": 540.0,
        "ci_high": 760.0,
        "win_rate": 0.1,
        "n": 20,
        "replicates": 2,
        "note": "",
    },
    {
        "rank": None,
        "setting": "setting3",
        "title": TITLES["setting3"],
        "score": None,
        "ci_low": None,
        "ci_high": None,
        "win_rate": None,
        "n": None,
        "replicates": None,
        "note": "not run: no verdicts for this setting",
    },
]


def make_context(config, **overrides):
    tests, baseline, generations = sample_records()
    kwargs = dict(
        config=config,
        winrate=winrate_rows(),
        pairwise=pairwise_rows(),
        split_stats=SPLIT_STATS,
        tests=tests,
        baseline=baseline,
        generations=generations,
        provenance=fake_provenance(),
        judge_prompt=read_prompt(JUDGE_PROMPT),
        fidelity=fidelity_rows(config),
        augment_stats=AUGMENT_STATS,
        leakage=LEAKAGE,
        claims=all_claims(),
        winrates=all_winrates(),
        agreement=agreement_rows(),
        compute=compute_rows(),
        calibration=calibration_rows(),
        ranking=RANKING,
    )
    kwargs.update(overrides)
    return paper_context(**kwargs)


def loss_frame(n_steps=20, val_every=5, with_val=True, scale=1.0):
    rows = [{"step": s, "epoch": s / n_steps, "split": "train", "loss": scale * 3.0 / s} for s in range(1, n_steps + 1)]
    if with_val:
        rows += [
            {"step": s, "epoch": s / n_steps, "split": "val", "loss": scale * 3.2 / s}
            for s in range(val_every, n_steps + 1, val_every)
        ]
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "loss"])


def pdftotext(path, layout=False):
    args = ["pdftotext", "-enc", "UTF-8", *(["-layout"] if layout else []), str(path), "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def squash(text):
    return "".join(text.split())


def write_run_files(folder: Path, config) -> dict:
    """The inputs of rule paper_context as run-like files under `folder`, by input name, in the
    rule's order (tables: test sets x judges; runs: settings x replicates)."""
    tests, baseline, generations = sample_records()

    def write(name, text):
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        return str(p)

    def jsonl(name, records):
        return write(name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))

    def claims_of(test_set, judge):
        rows = claims_rows(test_set)
        if judge != "primary":  # another judge's claims, which the paper does not show
            rows = [{**r, "effect": r["effect"] - 0.05, "verdict": "inconclusive"} for r in rows]
        return rows

    pairs = [(t, j) for t in TEST_SETS for j in JUDGES]
    return {
        "winrate": write("tables/course/primary/winrate.json", json.dumps(winrate_rows(), ensure_ascii=False)),
        "pairwise": write("tables/course/primary/pairwise.csv", pd.DataFrame(pairwise_rows()).to_csv(index=False)),
        "winrates": [
            write(f"tables/{t}/{j}/winrate.json", json.dumps(winrate_rows(t, j), ensure_ascii=False)) for t, j in pairs
        ],
        "claims": [
            write(f"tables/{t}/{j}/claims.json", json.dumps(claims_of(t, j), ensure_ascii=False)) for t, j in pairs
        ],
        "calibration": write("tables/calibration.csv", pd.DataFrame(calibration_rows()).to_csv(index=False)),
        "ranking": write("tables/course/primary/ranking.json", json.dumps(RANKING, ensure_ascii=False)),
        "agreement": write("tables/judge_agreement.csv", pd.DataFrame(agreement_rows()).to_csv(index=False)),
        "human_agreement": [],  # no human labels configured
        "fidelity": write("tables/fidelity.csv", pd.DataFrame(fidelity_rows(config)).to_csv(index=False)),
        "compute": write("tables/compute.csv", compute_table.to_csv(compute_rows())),
        "split_stats": write("data/split_stats.json", json.dumps(SPLIT_STATS)),
        "augment_stats": [write("data/augment_stats.json", json.dumps(AUGMENT_STATS))],
        "raw": jsonl("data/raw.jsonl", tests["course"] + tests["heldout"]),
        "tests": [jsonl(f"data/test/{t}.jsonl", tests[t]) for t in TEST_SETS],
        "near_duplicates": [
            write(f"data/near_duplicates/{t}.json", json.dumps(LEAKAGE[t], ensure_ascii=False)) for t in TEST_SETS
        ],
        "baseline": jsonl("baseline/course.jsonl", baseline),
        "generations": [
            jsonl(f"generations/course/{s}/rep{r}.jsonl", generations[s][r])
            for s in SETTINGS
            for r in range(REPLICATES)
        ],
        "train_stats": [
            write(f"train_stats/{s}/rep{r}.json", json.dumps({"device": "cpu", "versions": TRAIN_VERSIONS}))
            for s in TRAINED
            for r in range(REPLICATES)
        ],
        "models": [
            write(f"models/{m}/manifest.json", json.dumps({"source": m, "revision": "r1", "versions": MODEL_VERSIONS}))
            for m in ("qwen3-14b", "qwen3-4b")
        ],
        "judge_prompt": str(JUDGE_PROMPT),
    }


def context_params(config):
    """Rule paper_context's params for this config."""
    return {
        "config": config,
        "figures": FIGURES,
        "test_sets": list(TEST_SETS),
        "judges": list(JUDGES),
        "trained": list(TRAINED),
        "secret_envs": run_plan.secret_envs(config),
    }
