"""On a GPU: the decoding loop's CUDA-graph replay makes the tokens its eager run makes (a small
random Qwen3 in float32, greedy, a left-padded batch, the study's repetition penalty, attention
windows of 16 slots so that several graphs are captured), how many of them generate() makes too,
and what each costs per step; and the same replay over that model in 4-bit NF4 with a LoRA adapter
beside it (the study's answering form). Prints one JSON line; exits 1 when a replay's tokens
differ from its eager run's.

    python bench/decode_check.py
"""

import json
import sys
import time
from pathlib import Path

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from huatuo_study.answering import decoding  # noqa: E402

BATCH, PROMPT, NEW, WINDOW = 8, 24, 64, 16


def four_bit_with_adapter(model, folder: str):
    """The model saved, reloaded in NF4 with a random LoRA adapter on its projections (peft)."""
    from peft import LoraConfig, get_peft_model
    from transformers import BitsAndBytesConfig

    model.save_pretrained(folder)
    quantised = Qwen3ForCausalLM.from_pretrained(
        folder,
        device_map={"": 0},
        dtype=torch.float32,
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32
        ),
    )
    adapted = get_peft_model(
        quantised, LoraConfig(r=8, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False)
    )
    return adapted.eval()


def main() -> int:
    torch.manual_seed(0)
    config = Qwen3Config(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=512,
        pad_token_id=0,
        eos_token_id=1,
    )
    with torch.device("cuda"):
        model = Qwen3ForCausalLM._from_config(config, dtype=torch.float32).eval()
    ids = torch.randint(2, 4096, (BATCH, PROMPT), device="cuda")
    mask = torch.ones_like(ids)
    for row in range(BATCH):  # left padding of different lengths
        mask[row, : row * 2] = 0
        ids[row, : row * 2] = 0
    eos = torch.tensor([1], device="cuda")
    result = {}
    with torch.inference_mode():
        for name, graph in (("eager", False), ("cuda_graph", True)):
            torch.cuda.synchronize()
            start = time.perf_counter()
            result[name] = decoding.decode(
                model, ids, mask, NEW, decoding.processors(1.2, []), eos, 0, graph, window_slots=WINDOW
            )
            torch.cuda.synchronize()
            result[f"{name}_ms_per_step"] = round(1000 * (time.perf_counter() - start) / NEW, 2)
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        adapted = four_bit_with_adapter(model, folder)
        with torch.inference_mode():
            four_bit = {
                graph: decoding.decode(
                    adapted, ids, mask, NEW, decoding.processors(1.2, []), eos, 0, graph, window_slots=WINDOW
                )
                for graph in (False, True)
            }
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=NEW,
            do_sample=False,
            repetition_penalty=1.2,
            pad_token_id=0,
            eos_token_id=1,
        )
    generate = out[:, PROMPT:]
    report = {
        "graph_equals_eager": torch.equal(result["cuda_graph"], result["eager"]),
        "four_bit_adapter_graph_equals_eager": torch.equal(four_bit[True], four_bit[False]),
        # Numerics, not logic (the CPU test checks token for token): generate()'s dynamic cache
        # attends over the exact length, a static cache over a masked full length, with other
        # GPU kernels; on nearly flat random logits a last-bit difference can flip a token.
        "eager_tokens_equal_to_generate": round(
            (result["eager"][:, : generate.shape[1]] == generate).float().mean().item(), 3
        ),
        "eager_ms_per_step": result["eager_ms_per_step"],
        "cuda_graph_ms_per_step": result["cuda_graph_ms_per_step"],
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
    }
    print(json.dumps(report))
    return 0 if report["graph_equals_eager"] and report["four_bit_adapter_graph_equals_eager"] else 1


if __name__ == "__main__":
    sys.exit(main())
