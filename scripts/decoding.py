"""The decoding loop that answers a batch: Hugging Face's greedy search (the sampler, a logits
processor, does the drawing), over a static KV cache, with each decoding step replayed as one CUDA
graph on a GPU.

Why not generate(): a decoding step of a 4B model for 20 answers reads ~8 GB of weights (~2 ms on
an H200) but launches ~1,000 kernels from Python (~100 ms); generate() only removes that launch cost
by compiling the step with torch.compile, ~40 s a job (bench/RESULTS.md). Capturing the eager step
into a CUDA graph costs one step's time: the static cache keeps every tensor at a fixed address,
and the attention mask and positions are buffers updated in place between replays. On the CPU the
same loop runs the step eagerly; tests/test_decoding.py checks it against generate() token for token."""

import torch
from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor, StaticCache

# How often the loop asks the GPU whether every answer has ended: each ask waits for the GPU, and
# the steps run past the last end only produce padding.
CHECK_ENDED_EVERY = 8


def processors(repetition_penalty: float, sampler: list) -> LogitsProcessorList:
    """generate()'s processors for these arguments, in its order: the penalty, then ours."""
    penalty = [RepetitionPenaltyLogitsProcessor(repetition_penalty)] if repetition_penalty != 1.0 else []
    return LogitsProcessorList(penalty + list(sampler))


class DecodingStep:
    """One decoding step of the whole batch: the model's forward for the last token of each row,
    over the static cache, its inputs in fixed buffers. With `cuda_graph`, the first step runs
    eagerly on a side stream (capture needs the allocator and the kernels' lazy set-up warmed), the
    second is captured and every step from then on replays it. The cache's write position is a
    tensor the forward advances itself, so a replay writes where an eager step would."""

    def __init__(self, model, mask: torch.Tensor, positions: torch.Tensor, cache: StaticCache, cuda_graph: bool):
        self.model, self.cache = model, cache
        self.mask = mask  # [batch, cache length], True where a row has a token
        self.positions = positions[:, -1:].clone()  # [batch, 1]: each row's last position
        self.tokens = torch.zeros_like(self.positions)
        self.cuda_graph, self.warmed, self.graph, self.logits = cuda_graph, False, None, None

    def forward(self) -> torch.Tensor:
        out = self.model(input_ids=self.tokens, attention_mask=self.mask[:, None, None, :],
                         position_ids=self.positions, past_key_values=self.cache, use_cache=True)
        return out.logits[:, -1, :]

    def __call__(self, tokens: torch.Tensor, slot: int) -> torch.Tensor:
        """The logits after `tokens` [batch, 1], written at cache position `slot` (valid until the next call)."""
        self.tokens.copy_(tokens)
        self.positions += 1
        self.mask[:, slot] = True
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
        if self.graph is None:
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):  # records the step; nothing runs until the replay
                self.logits = self.forward()
        self.graph.replay()
        return self.logits


def decode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int,
           logits_processor: LogitsProcessorList, eos: torch.Tensor, pad_token_id: int,
           cuda_graph: bool) -> torch.Tensor:
    """The new tokens [batch, <= max_new_tokens] of a left-padded batch, as generate(do_sample=False,
    logits_processor=…) makes them: each step's float32 logits through the processors, the argmax,
    padding after a row's end; it stops once every row has ended."""
    batch, prompt = input_ids.shape
    length = prompt + max_new_tokens
    cache = StaticCache(config=model.config, max_cache_len=length)
    mask = torch.zeros(batch, length, dtype=torch.bool, device=input_ids.device)
    mask[:, :prompt] = attention_mask.bool()
    positions = attention_mask.long().cumsum(-1) - 1
    positions.masked_fill_(attention_mask == 0, 1)  # as generate() places padding
    causal = torch.arange(length, device=input_ids.device) <= torch.arange(prompt, device=input_ids.device)[:, None]
    logits = model(input_ids=input_ids, attention_mask=mask[:, None, None, :] & causal,
                   position_ids=positions, past_key_values=cache, use_cache=True, logits_to_keep=1).logits[:, -1, :]
    step = DecodingStep(model, mask, positions, cache, cuda_graph)
    sequences, unfinished = input_ids, torch.ones(batch, dtype=torch.bool, device=input_ids.device)
    for t in range(max_new_tokens):
        scores = logits_processor(sequences, logits.to(dtype=torch.float32))
        tokens = torch.where(unfinished, scores.argmax(-1), pad_token_id)
        sequences = torch.cat([sequences, tokens[:, None]], dim=-1)
        unfinished &= ~torch.isin(tokens, eos)
        last = t + 1 == max_new_tokens
        if last or ((t + 1) % CHECK_ENDED_EVERY == 0 and not unfinished.any()):
            break
        logits = step(tokens[:, None], prompt + t)
    return sequences[:, prompt:]
