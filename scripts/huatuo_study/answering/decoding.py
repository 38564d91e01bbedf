"""The decoding loop that answers a batch: Hugging Face's greedy search (the sampler, a logits
processor, does the drawing), over a static KV cache, with each decoding step replayed as one CUDA
graph on a GPU.

Why not generate(): a decoding step of a 4B model for 20 answers reads ~8 GB of weights (~2 ms on
an H200) but launches ~1,000 kernels from Python (~100 ms); generate() only removes that launch cost
by compiling the step with torch.compile, ~40 s a job (bench/RESULTS.md). Capturing the eager step
into a CUDA graph costs one step's time: the static cache keeps every tensor at a fixed address,
and the attention mask and positions are buffers updated in place between replays. On the CPU the
same loop runs the step eagerly; tests/test_decoding.py checks it against generate() token for token.

Attention reads only the cache slots filled so far, rounded up to a window of WINDOW_SLOTS: read
whole, a static cache of 875 slots is read every step while on average about half of it is filled
(the windows save 0.8 ms of a 4B step of 20 answers and 1.2 ms of one of 100: bench/RESULTS.md,
bench/decode_speed.py). A window is a view of the cache, so each window length is one more
captured graph, all in one memory pool."""

import logging
import math

import torch
from transformers import LogitsProcessor, LogitsProcessorList, StaticCache
from transformers.cache_utils import StaticLayer

# How often the loop asks the GPU whether every answer has ended: each ask waits for the GPU, and
# the steps run past the last end only produce padding.
log = logging.getLogger("pipeline")  # the stages' logger (common.log), by name: no project imports here

CHECK_ENDED_EVERY = 8
# [ours] Cache slots a window grows by: 7 windows for the study's 875 slots, so 7 graph captures
# (about a step each) buy attention over about half the slots on average.
WINDOW_SLOTS = 128


class RepetitionPenalty(LogitsProcessor):
    """transformers' RepetitionPenaltyLogitsProcessor (a seen token's score divided by the penalty,
    or multiplied where negative), with the tokens seen kept as a [batch, vocabulary] mask that each
    call adds the new tokens to, instead of a gather and scatter over the whole sequence every step.
    For one decoding loop: it assumes each call's input_ids extend the last call's."""

    def __init__(self, penalty: float):
        self.penalty, self.seen, self.length = penalty, None, 0

    def __call__(self, input_ids: torch.LongTensor, scores: torch.Tensor) -> torch.Tensor:
        if self.seen is None:
            self.seen = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        self.seen.scatter_(1, input_ids[:, self.length :], True)
        self.length = input_ids.shape[1]
        penalised = torch.where(scores < 0, scores * self.penalty, scores / self.penalty)
        return torch.where(self.seen, penalised, scores)


def processors(repetition_penalty: float, sampler: list) -> LogitsProcessorList:
    """generate()'s processors for these arguments, in its order: the penalty, then ours."""
    penalty = [RepetitionPenalty(repetition_penalty)] if repetition_penalty != 1.0 else []
    return LogitsProcessorList(penalty + list(sampler))


class WindowedLayer(StaticLayer):
    """A static cache layer whose update hands attention only the first `window.slots` slots (a
    view: the tensors keep their addresses, so a captured graph replays over the same memory)."""

    def __init__(self, max_cache_len: int, window: "Window"):
        super().__init__(max_cache_len=max_cache_len)
        self.window = window

    def update(self, key_states, value_states, *args, **kwargs):
        keys, values = super().update(key_states, value_states, *args, **kwargs)
        return keys[:, :, : self.window.slots], values[:, :, : self.window.slots]


class Window:
    """The cache slots attention reads: those filled, rounded up to `step` slots."""

    def __init__(self, length: int, step: int):
        self.length, self.step, self.slots = length, step, length

    def cover(self, filled: int) -> int:
        self.slots = min(self.length, math.ceil(filled / self.step) * self.step)
        return self.slots


def windowed_cache(config, length: int, window: Window) -> StaticCache:
    """A StaticCache of `length` slots whose full-attention layers read through `window`."""
    cache = StaticCache(config=config, max_cache_len=length)
    cache.layers = [WindowedLayer(length, window) if type(layer) is StaticLayer else layer for layer in cache.layers]
    return cache


class DecodingStep:
    """One decoding step of the whole batch: the model's forward for the last token of each row,
    over the static cache, its inputs in fixed buffers. With `cuda_graph`, the first step runs
    eagerly on a side stream (capture needs the allocator and the kernels' lazy set-up warmed);
    the first step of each window is captured and every later step of that window replays it,
    each graph in the first one's memory pool. The cache's write position is a tensor the forward
    advances itself, so a replay writes where an eager step would."""

    def __init__(
        self, model, mask: torch.Tensor, positions: torch.Tensor, cache: StaticCache, window: Window, cuda_graph: bool
    ):
        self.model, self.cache, self.window = model, cache, window
        self.mask = mask  # [batch, cache length], True where a row has a token
        self.positions = positions[:, -1:].clone()  # [batch, 1]: each row's last position
        self.tokens = torch.zeros_like(self.positions)
        self.cuda_graph, self.warmed, self.graphs, self.pool = cuda_graph, False, {}, None

    def forward(self) -> torch.Tensor:
        out = self.model(
            input_ids=self.tokens,
            attention_mask=self.mask[:, None, None, : self.window.slots],
            position_ids=self.positions,
            past_key_values=self.cache,
            use_cache=True,
        )
        return out.logits[:, -1, :]

    def __call__(self, tokens: torch.Tensor, slot: int) -> torch.Tensor:
        """The logits after `tokens` [batch, 1], written at cache position `slot` (valid until the next call)."""
        self.tokens.copy_(tokens)
        self.positions += 1
        self.mask[:, slot] = True
        slots = self.window.cover(slot + 1)
        if not self.cuda_graph:
            return self.forward()
        if not self.warmed:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                logits = self.forward()
            torch.cuda.current_stream().wait_stream(side)
            self.warmed = True
            return logits
        if slots not in self.graphs:
            graph = torch.cuda.CUDAGraph()
            try:
                with torch.cuda.graph(graph, pool=self.pool):  # records the step; nothing runs until the replay
                    logits = self.forward()
            except RuntimeError as e:  # a kernel that cannot be captured: this step and the rest run eagerly
                log.warning("CUDA graph capture failed (%s); decoding eagerly", str(e).splitlines()[0])
                self.cuda_graph = False
                return self.forward()
            self.pool = self.pool or graph.pool()
            self.graphs[slots] = graph, logits
        graph, logits = self.graphs[slots]
        graph.replay()
        return logits


def decode(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    logits_processor: LogitsProcessorList,
    eos: torch.Tensor,
    pad_token_id: int,
    cuda_graph: bool,
    window_slots: int = WINDOW_SLOTS,
) -> torch.Tensor:
    """The new tokens [batch, <= max_new_tokens] of a left-padded batch, as generate(do_sample=False,
    logits_processor=…) makes them: each step's float32 logits through the processors, the argmax,
    padding after a row's end; it stops once every row has ended."""
    batch, prompt = input_ids.shape
    length = prompt + max_new_tokens
    window = Window(length, window_slots)
    cache = windowed_cache(model.config, length, window)
    mask = torch.zeros(batch, length, dtype=torch.bool, device=input_ids.device)
    mask[:, :prompt] = attention_mask.bool()
    positions = attention_mask.long().cumsum(-1) - 1
    positions.masked_fill_(attention_mask == 0, 1)  # as generate() places padding
    window.cover(prompt)
    causal = (
        torch.arange(window.slots, device=input_ids.device) <= torch.arange(prompt, device=input_ids.device)[:, None]
    )
    logits = model(
        input_ids=input_ids,
        attention_mask=mask[:, None, None, : window.slots] & causal,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1, :]
    step = DecodingStep(model, mask, positions, cache, window, cuda_graph)
    sequences = torch.full((batch, length), pad_token_id, dtype=input_ids.dtype, device=input_ids.device)
    sequences[:, :prompt] = input_ids
    unfinished = torch.ones(batch, dtype=torch.bool, device=input_ids.device)
    for t in range(max_new_tokens):
        scores = logits_processor(sequences[:, : prompt + t], logits.to(dtype=torch.float32))
        tokens = torch.where(unfinished, scores.argmax(-1), pad_token_id)
        sequences[:, prompt + t] = tokens
        unfinished &= ~torch.isin(tokens, eos)
        last = t + 1 == max_new_tokens
        if last or ((t + 1) % CHECK_ENDED_EVERY == 0 and not unfinished.any()):
            break
        logits = step(tokens[:, None], prompt + t)
    return sequences[:, prompt : prompt + t + 1]
