"""The model card: hub metadata that parses, and numbers equal to the files it is written from."""

from types import SimpleNamespace

import pytest
import yaml

import model_card
from conftest import REPO, fake_snakemake, with_defaults
from huatuo_study.common import write_json, write_jsonl, write_text

SETTING = with_defaults(
    "settings.setting1",
    {
        "title": "Baseline recipe (tiny-s)",
        "model": "tiny-s",
        "data": "augmented",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
        "training": {
            "num_train_epochs": 2,
            "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 8,
            "learning_rate": 2e-3,
            "weight_decay": 0.001,
            "warmup_steps": 0.03,
            "lr_scheduler_type": "cosine",
            "optim": "adamw_torch",
            "bf16": False,
            "train_sampling_strategy": "group_by_length",
            "activation_checkpointing": True,
            "eval_steps": 10,
            "max_length": 256,
            "save_steps": 10,
            "seed": 43,
            "report_to": "tensorboard",
        },
    },
)
STATS = {
    "global_step": 24,
    "epochs": 2.0,
    "train_runtime_s": 29.5,
    "trainable_parameters": 7168,
    "device": "cpu",
    "peak_gpu_gib": None,
    "train_tokens": 53906,
    "train_tokens_per_s": 1827.3,
    "execution": {"micro_batch": 2, "grad_accum": 8, "compiled_layers": False, "frozen_base": "4-bit"},
    "versions": {"torch": "2.13.0+cpu", "peft": "0.21.2"},
}
LOSSES = [(1, "train", 6.04), (10, "val", 6.61), (24, "train", 5.7906), (24, "val", 6.4584)]
# Two judges on one test set; setting1 against the baseline and against control-s.
RANKING = {
    "primary": [
        {
            "rank": 1,
            "setting": "baseline",
            "title": "baseline",
            "score": 1000.0,
            "ci_low": None,
            "ci_high": None,
            "win_rate": None,
            "n": None,
            "replicates": None,
            "note": "anchor",
        },
        {
            "rank": 2,
            "setting": "setting1",
            "title": "t",
            "score": 893.4,
            "ci_low": 801.2,
            "ci_high": 975.5,
            "win_rate": 0.3542,
            "n": 12,
            "replicates": 2,
            "note": "",
        },
    ],
    "chrf": [
        {
            "rank": 1,
            "setting": "setting1",
            "title": "t",
            "score": 1010.0,
            "ci_low": 950.0,
            "ci_high": 1070.0,
            "win_rate": 0.5144,
            "n": 12,
            "replicates": 2,
            "note": "",
        }
    ],
}
WINRATE = {
    "primary": {"wins": 7, "ties": 3, "losses": 14, "invalid": 0},
    "chrf": {"wins": 11, "ties": 2, "losses": 11, "invalid": 0},
}
REPLICATES = {
    "primary": [("setting1", 0, 3, 2, 7, 0), ("setting1", 1, 4, 1, 7, 0)],
    "chrf": [("setting1", 0, 6, 1, 5, 0), ("setting1", 1, 5, 1, 6, 0)],
}
CLAIMS = [
    {
        "id": "beats_baseline_1",
        "claim": "Setting 1 beats the baseline",
        "setting": "setting1",
        "against": "baseline",
        "effect": -0.1458,
        "ci_low": -0.30,
        "ci_high": 0.02,
        "verdict": "inconclusive",
    },
    {
        "id": "scaling",
        "claim": "Scaling",
        "setting": "setting2",
        "against": "setting1",
        "effect": -0.16,
        "ci_low": -0.41,
        "ci_high": 0.08,
        "verdict": "inconclusive",
    },
    {
        "id": "sft_effective_14b",
        "claim": "x",
        "setting": "setting2",
        "against": "control",
        "effect": None,
        "ci_low": None,
        "ci_high": None,
        "verdict": "not run",
    },
]


def write_inputs(root):
    write_jsonl(root / "train.jsonl", [{"id": i} for i in range(233)])
    write_jsonl(root / "val.jsonl", [{"id": i} for i in range(24)])
    write_json(root / "split_stats.json", {"n_raw": 257, "n_kept": 239, "seed": 7})
    write_json(
        root / "augment_stats.json",
        {"method": "synonym", "ratio": 0.3, "seed": 42, "n_train": 179, "n_augmented": 54, "augmented_share": 0.3017},
    )
    write_json(root / "stats.json", STATS)
    write_text(root / "loss.csv", "step,epoch,split,loss\n" + "".join(f"{s},0.1,{k},{v}\n" for s, k, v in LOSSES))
    write_text(root / "bench.tsv", "s\th:m:s\tmax_rss\tmax_vms\n41.25\t0:00:41\t1530.5\t4000.1\n")
    write_json(root / "manifest.json", {"source": "build", "path": "results/demo/models/tiny-s/weights"})
    tables = {}
    for judge in ("primary", "chrf"):
        d = root / judge
        write_json(d / "ranking.json", RANKING[judge])
        write_json(d / "claims.json", CLAIMS)
        write_json(d / "winrate.json", [{"setting": "setting1", **WINRATE[judge]}])
        write_text(
            d / "replicates.csv",
            "setting,replicate,n,wins,ties,losses,invalid,win_rate\n"
            + "".join(f"{s},{r},12,{w},{t},{lost},{i},{w / 12}\n" for s, r, w, t, lost, i in REPLICATES[judge]),
        )
        for name in ("ranking", "claims", "winrate", "replicates"):
            tables.setdefault(name, []).append(str(d / (f"{name}.csv" if name == "replicates" else f"{name}.json")))
    return tables


@pytest.fixture
def card(tmp_path):
    tables = write_inputs(tmp_path)
    smk = fake_snakemake(
        input={
            "adapter": "results/demo/adapters/setting1/rep1",
            "stats": str(tmp_path / "stats.json"),
            "loss": str(tmp_path / "loss.csv"),
            "benchmark": str(tmp_path / "bench.tsv"),
            "model": str(tmp_path / "manifest.json"),
            "train": str(tmp_path / "train.jsonl"),
            "val": str(tmp_path / "val.jsonl"),
            "split_stats": str(tmp_path / "split_stats.json"),
            "augment_stats": [str(tmp_path / "augment_stats.json")],
            **tables,
            "template": str(REPO / "scripts" / "templates" / "model_card.md.j2"),
        },
        output={"card": str(tmp_path / "README.md")},
        params={
            "run": "demo",
            "title": SETTING["title"],
            "setting": {k: v for k, v in SETTING.items() if k != "title"},
            "base_model": {"source": "build"},
            "data": {"source": "data/demo/huatuo_lite_demo.jsonl"},
            "quantization": {"quant_type": "nf4", "double_quant": True, "compute_dtype": "float32"},
            "device": "cpu",
            "license": "apache-2.0",
            "merged": "results/demo/merged/setting1/rep1",
            "evaluations": [
                {"test_set": "small", "judge": j, "judge_model": f"reference: {m}"}
                for j, m in (("primary", "rouge-l-char"), ("chrf", "chrf"))
            ],
        },
    )
    smk.wildcards = SimpleNamespace(setting="setting1", replicate="1")
    model_card.main(smk)
    return (tmp_path / "README.md").read_text(encoding="utf-8")


def table_row(text, first_cells):
    """The cells of the markdown table row that starts with these cells."""
    start = "| " + " | ".join(first_cells) + " |"
    line = next(line for line in text.splitlines() if line.startswith(start))
    return [c.strip() for c in line.strip("|").split("|")]


def test_the_metadata_is_the_hubs_yaml_front_matter(card):
    assert card.startswith("---\n")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["base_model"] == "results/demo/models/tiny-s/weights"  # a built model: its folder
    assert meta["library_name"] == "peft" and meta["license"] == "apache-2.0" and meta["language"] == ["zh"]
    assert meta["datasets"] == ["data/demo/huatuo_lite_demo.jsonl"]
    assert {"peft", "lora", "qlora", "base_model:adapter:results/demo/models/tiny-s/weights"} <= set(meta["tags"])


def test_data_recipe_and_training_figures_are_the_inputs(card):
    assert "233 training rows (after augmentation), 24 validation rows" in card
    assert "54\n  of 179 training questions got a rewritten copy (share 0.302)" in card
    assert table_row(card, ["`learning_rate`"])[1] == "`0.002`"
    assert table_row(card, ["`seed`"])[1] == "`43`"  # the replicate's seed
    assert table_row(card, ["`report_to`"])[1] == "`tensorboard`"
    assert table_row(card, ["`completion_only_loss`"])[1] == "`True`"  # the pipeline's own choices too
    assert table_row(card, ["optimiser steps"])[1] == "24"
    assert table_row(card, ["tokens trained on (prompt and answer, every epoch)"])[1] == "53906"
    assert table_row(card, ["final train loss (step 24)"])[1] == "5.7906"
    assert table_row(card, ["final validation loss (step 24)"])[1] == "6.4584"
    assert table_row(card, ["whole job (Snakemake's benchmark)"])[1] == "41.2 s, max RSS 1530 MB"
    assert table_row(card, ["peak GPU memory"])[1] == "n/a (no GPU)"
    assert "mean nothing about medicine" in card  # a built model: the demo's caveat
    assert 'from_pretrained("results/demo/merged/setting1/rep1")' in card


def test_evaluation_rows_are_the_tables_numbers(card):
    row = table_row(card, ["small", "primary (reference: rouge-l-char)"])
    assert row[2:5] == ["12 x 2", "7 / 3 / 14 / 0", "0.354 [0.242, 0.465]"]
    low, high = (model_card.rate_from_score(s) for s in (801.2, 975.5))
    assert row[4] == f"0.354 [{low:.3f}, {high:.3f}]"
    assert row[5:7] == ["893 [801, 976]", "2 of 2"]
    assert row[7] == f"{(4 + 1 / 2) / 12:.3f}"  # replicate 1: 4 wins, 1 tie of 12
    assert table_row(card, ["small", "chrf (reference: chrf)"])[4] == "0.514 [0.429, 0.599]"
    claim = table_row(card, ["small", "primary", "Setting 1 beats the baseline (`setting1` vs `baseline`)"])
    assert claim[3:] == ["-0.146 [-0.300, 0.020]", "inconclusive"]
    assert "Scaling (`setting2` vs `setting1`)" in card and "`control`" not in card  # not run: left out


def test_the_score_map_inverts_the_ranking_tables():
    from huatuo_study.statistics.bradley_terry import elo_from_rate

    for p in (0.1, 0.5, 0.8):
        assert model_card.rate_from_score(elo_from_rate(p)) == pytest.approx(p)


def test_the_mean_score_is_the_ranking_tables_on_real_counts():
    # win 1, tie 1/2, loss 0, invalid 1/2, as crossed_stats scores a verdict
    assert model_card.mean_score(7, 3, 14, 0) == pytest.approx(8.5 / 24)
    assert model_card.mean_score(1, 0, 0, 1) == 0.75
