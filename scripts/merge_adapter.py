"""Stage merged export: an adapter folded into its base for serving elsewhere. The base is loaded
the way the answers are made (qlora.load_generation_model: the 4-bit NF4 base dequantised once
to the compute dtype, the adapter merged with peft's merge_and_unload), then saved as a dense
Hugging Face model (safetensors, config, generation config) with its tokenizer, loadable by
AutoModelForCausalLM.from_pretrained. Its model card is the adapter's (model_cards/), which
says where this folder is."""

from huatuo_study.model import gpu_slots

if "snakemake" in globals():  # this job's own GPU(s), taken before torch initialises CUDA
    gpu_slots.take_for_job(snakemake)  # noqa: F821

from huatuo_study.common import atomic_dir, log, run_stage
from huatuo_study.model.qlora import load_generation_model, load_tokenizer


def merged_model(model_manifest, adapter_dir, quantization, device):
    """The merged dense model, with no trace of the 4-bit loading in its config (a model saved
    with a quantization_config would be quantised again on loading)."""
    model = load_generation_model(model_manifest, quantization, device, adapter_dir)
    model.config.__dict__.pop("quantization_config", None)
    model.config.dtype = quantization["compute_dtype"]
    return model


def export(model_manifest, adapter_dir, quantization, device, out) -> None:
    model = merged_model(model_manifest, adapter_dir, quantization, device)
    with atomic_dir(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        load_tokenizer(model_manifest).save_pretrained(tmp)
    log.info("Merged %s into its base: %s", adapter_dir, out)


def main(smk):
    export(smk.input.model, smk.input.adapter, smk.params.quantization, smk.params.device, smk.output.merged)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
