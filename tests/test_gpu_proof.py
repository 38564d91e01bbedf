"""config/gpu-proof.yaml: the study's DAG on a GPU with nothing to download. It must be the
study's config wherever the study's compute is decided (recipes, settings, quantisation, sizes,
decoding, replicates) and differ only where it says [ours]."""

import yaml

from conftest import REPO
from dag import copy_repo, planned_jobs

STUDY = yaml.safe_load((REPO / "config" / "config.yaml").read_text(encoding="utf-8"))
PROOF = yaml.safe_load((REPO / "config" / "gpu-proof.yaml").read_text(encoding="utf-8"))
# Qwen3-4B's and Qwen3-14B's config.json on the hub.
PUBLISHED = {
    "qwen3-4b": {
        "hidden_size": 2560,
        "intermediate_size": 9728,
        "num_hidden_layers": 36,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "tie_word_embeddings": True,
    },
    "qwen3-14b": {
        "hidden_size": 5120,
        "intermediate_size": 17408,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "tie_word_embeddings": False,
    },
}


def test_the_proof_runs_the_studys_recipes_sizes_and_decoding():
    for key in ("device", "gpu_memory_gib", "quantization", "recipes", "settings", "generation", "replicates", "judge"):
        assert PROOF[key] == STUDY[key], key
    assert PROOF["splits"]["sizes"]["train"] == STUDY["splits"]["sizes"]["train"]
    assert PROOF["splits"]["sizes"]["val"] == STUDY["splits"]["sizes"]["val"]
    course = {"source": "../shared/data/zh_med.json", "n": 20, "baseline": {"source": "file"}}
    assert PROOF["test_sets"] == {"course": course, "course-x10": {**course, "copies": 10}}
    assert PROOF["augmentation"]["ratio"] == STUDY["augmentation"]["ratio"]
    assert set(PROOF["models"]) == set(STUDY["models"])
    for name, model in PROOF["models"].items():
        assert model["source"] == "build" and model["build"]["dtype"] == "bfloat16"
        assert {k: model["build"][k] for k in PUBLISHED[name]} == PUBLISHED[name]


def test_the_proof_plans_every_training_and_answer_of_the_study(tmp_path, shared_data):
    """With the real rows beside the checkout: 4 settings x 3 replicates trained, 6 settings x 3
    replicates answering the course's questions and their 10 copies, both base models built, and the
    compute table."""
    (tmp_path / "repo").mkdir()
    root = copy_repo(tmp_path / "repo")
    (tmp_path / "shared").symlink_to(shared_data.parent)
    jobs = planned_jobs(
        root,
        "--configfile",
        "config/gpu-proof.yaml",
        "--resources",
        "gpu=1",
        "--until",
        "compute_table",
        env={"HF_HUB_OFFLINE": "1", "OPENAI_API_KEY": ""},
    )
    assert jobs == {
        "raw_data": 1,
        "split_data": 1,
        "augment_train": 1,
        "test_set": 2,
        "base_model": 2,
        "train_adapter": 12,
        "generate_answers": 36,
        "compute_table": 1,
    }
