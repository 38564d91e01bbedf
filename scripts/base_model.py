"""Stage base model: resolve a hub model (fetched once, pinned to its commit) or a local folder,
or build a Qwen3-architecture model of a given shape: Qwen3's own tokenizer (qwen3_tokenizer) or
a byte-level BPE tokenizer trained on the train split, Qwen3's chat template, and seeded random
weights, optionally given a short plain-text pretraining pass on the train split.
Writes models/<name>/manifest.json, which training and generation load from."""

from huatuo_study.model import gpu_slots

if "snakemake" in globals():  # this job's own GPU(s), taken before torch initialises CUDA
    gpu_slots.take_for_job(snakemake)  # noqa: F821

import os
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen3Config, Qwen3ForCausalLM

from huatuo_study.common import PipelineError, atomic_dir, log, read_jsonl, run_stage, write_json
from huatuo_study.model import qwen3_tokenizer

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]
MAX_POSITIONS = 2048  # a built model's context, and its tokenizer's


def train_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE (as Qwen's) learned from the given texts."""
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:2] + SPECIAL_TOKENS[3:],
        chat_template=qwen3_tokenizer.CHAT_TEMPLATE,
        model_max_length=MAX_POSITIONS,
    )


def pretrain(
    model, tokenizer, texts: list[str], epochs: int, lr: float, block: int = 128, batch: int = 16
) -> list[float]:
    """A short causal-LM pass over plain text (no chat markup), so the tiny base model has some
    language for the adapters to build on, as a real base model has. Returns the epoch losses."""
    ids = [i for t in texts for i in tokenizer(t + tokenizer.eos_token)["input_ids"]]
    blocks = torch.tensor(ids[: len(ids) // block * block]).view(-1, block)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    losses = []
    for epoch in range(epochs):
        order, total = torch.randperm(len(blocks)), 0.0
        for start in range(0, len(blocks), batch):
            x = blocks[order[start : start + batch]].to(model.device)
            loss = model(input_ids=x, labels=x).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item() * len(x)
        losses.append(total / len(blocks))
        log.info("pretrain epoch %d: loss %.3f", epoch + 1, losses[-1])
    return losses


def build_model(train: list[dict], shape: dict, out_dir: str | os.PathLike, device: str) -> dict:
    """Tokenizer + seeded Qwen3ForCausalLM (random, then optionally pretrained on the train text)
    saved in Hugging Face format; returns what the manifest records of it."""
    texts = [t for r in train for t in (r["question"], r["answer"])]
    if shape["tokenizer"] == "qwen3":
        tokenizer = qwen3_tokenizer.build_tokenizer(MAX_POSITIONS)
    else:
        tokenizer = train_tokenizer(texts, shape["vocab_size"])
    if len(tokenizer) > shape["vocab_size"]:
        raise PipelineError(
            f"models: build.vocab_size {shape['vocab_size']} is fewer embedding rows than the "
            f"{shape['tokenizer']} tokenizer's {len(tokenizer)} tokens (Qwen3's models have "
            f"{qwen3_tokenizer.QWEN3_VOCAB_ROWS} rows)"
        )
    config = Qwen3Config(
        vocab_size=shape["vocab_size"],
        hidden_size=shape["hidden_size"],
        intermediate_size=shape["intermediate_size"],
        num_hidden_layers=shape["num_hidden_layers"],
        num_attention_heads=shape["num_attention_heads"],
        num_key_value_heads=shape["num_key_value_heads"],
        head_dim=shape["head_dim"],
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=shape["tie_word_embeddings"],
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(shape["seed"])
    with torch.device(device):
        model = Qwen3ForCausalLM._from_config(config, dtype=getattr(torch, shape["dtype"]))
    pretrain_losses = pretrain(model, tokenizer, texts, shape["pretrain_epochs"], shape["pretrain_lr"])
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "tokenizer": shape["tokenizer"],
        "tokens": len(tokenizer),
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretrain_losses": pretrain_losses,
    }


def fetch_hub_model(repo_id: str, revision: str | None) -> str:
    """Download once (in a CPU job, not the GPU one) and return the commit it resolved to."""
    from huggingface_hub import snapshot_download

    log.info("Fetching %s at revision %s from the hub", repo_id, revision)
    path = snapshot_download(repo_id, revision=revision, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja"])
    return Path(path).name  # snapshots/<commit sha>


def resolve_model(model: dict, train_path: str | None, out_dir: Path, device: str) -> dict:
    source = model["source"]
    if source == "build":
        with atomic_dir(out_dir / "weights") as tmp:
            built = build_model(read_jsonl(train_path), model["build"], tmp, device)
        return {"source": "build", "path": str(out_dir / "weights"), "revision": None, **built}
    if os.path.isdir(source):
        if not os.path.exists(os.path.join(source, "config.json")):
            raise PipelineError(f"models: local model folder '{source}' has no config.json")
        return {"source": source, "path": os.path.abspath(source), "revision": None}
    return {"source": source, "path": source, "revision": fetch_hub_model(source, model.get("revision"))}


def main(smk):
    from huatuo_study.versions import BASE_MODEL as BASE_MODEL_PACKAGES
    from huatuo_study.versions import QWEN3_TOKENIZER, versions

    manifest_path = Path(smk.output[0])
    train = smk.input.train[0] if smk.input.train else None
    manifest = resolve_model(smk.params.model, train, manifest_path.parent, smk.params.device)
    # For the paper's provenance: what this job built or fetched the model with.
    packages = BASE_MODEL_PACKAGES + (QWEN3_TOKENIZER if manifest.get("tokenizer") == "qwen3" else ())
    write_json(manifest_path, {**manifest, "versions": versions(packages)})
    log.info("Base model ready: %s", manifest)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
