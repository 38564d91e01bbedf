"""Models: loading the QLoRA base, the memory budget and GPU slots, the SFT recipe, Qwen3's tokenizer."""
