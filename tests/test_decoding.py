"""Decoding as the study did it (temperature, top_p, repetition penalty), with each question
sampling from its own seed: the Gumbel-max sampler's distribution, answers that do not depend on
the batch, reruns, greedy as Hugging Face's, hit_token_limit, and the repetition penalty; through
the pipeline's decoding loop, checked against the real transformers generate(), on a tiny random
Qwen3 on the CPU."""

import numpy as np
import pytest
import torch
from scipy.stats import chisquare
from transformers import LogitsProcessorList

import base_model
from conftest import with_defaults
from huatuo_study.answering import answers, decoding
from huatuo_study.common import CHAT_TEMPLATE_KWARGS, chat_prompt, write_json, write_jsonl
from huatuo_study.model import qlora
from huatuo_study.records import check_record
from test_models import QA, QUANT, SHAPE

QUESTIONS = [q for q, _ in QA] + [
    "短？",
    "这是一个比较长的问题，让同一批里的提示长短不一，于是有左侧填充：答案会变吗？",
]
IDS = [f"q{i}" for i in range(len(QUESTIONS))]
STUDY = {
    "do_sample": True,
    "temperature": 0.7,
    "top_p": 0.9,
    "repetition_penalty": 1.2,
    "max_new_tokens": 24,
    "seed": 42,
    "batch_size": 6,
}
GREEDY = with_defaults("generation", {"do_sample": False, "max_new_tokens": 16, "batch_size": 3})


@pytest.fixture(scope="module")
def tiny_manifest(tmp_path_factory) -> str:
    """The manifest of a tiny random Qwen3 the pipeline builds."""
    root = tmp_path_factory.mktemp("tiny-decoding")
    write_jsonl(
        root / "train.jsonl", [{"id": i, "question": f"{q}（{i}）", "answer": a} for i in range(5) for q, a in QA]
    )
    manifest = base_model.resolve_model(
        {"source": "build", "build": SHAPE}, str(root / "train.jsonl"), root / "m", "cpu"
    )
    write_json(root / "m" / "manifest.json", manifest)
    return str(root / "m" / "manifest.json")


@pytest.fixture(scope="module")
def tiny(tiny_manifest):
    """The pipeline's generation model (NF4 dequantised once, float32) of that Qwen3, and its tokenizer."""
    return qlora.load_generation_model(tiny_manifest, QUANT, "cpu"), qlora.load_tokenizer(tiny_manifest)


def answer(model, tokenizer, questions, generation, ids):
    """answer_questions' records, and each answer's new token ids (up to its EOS, which is kept),
    read off the decoding loop itself."""
    rows, decode = [], answers.decode

    def spy(*args, **kwargs):
        out = decode(*args, **kwargs)
        rows.extend(out.tolist())
        return out

    answers.decode = spy
    try:
        records = answers.answer_questions(model, tokenizer, questions, generation, ids)
    finally:
        answers.decode = decode
    eos = set(answers.eos_token_ids(model, tokenizer))
    tokens = [row[: next((i + 1 for i, t in enumerate(row) if t in eos), len(row))] for row in rows]
    return records, tokens


def expected_distribution(logits, temperature, top_p, top_k):
    """softmax(logits / T), restricted to the top_k tokens and then to the top_p nucleus as
    transformers defines it (a token is dropped when the mass of it and all smaller ones is at most
    1 - top_p), renormalised: written here from the definitions, not with transformers' warpers."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    keep = np.ones(len(scaled), dtype=bool)
    if top_k:
        keep[np.argsort(-scaled)[top_k:]] = False
    p = np.where(keep, np.exp(scaled - scaled.max()), 0.0)
    p /= p.sum()
    ascending = np.argsort(p, kind="stable")
    mass_up_to = np.cumsum(p[ascending])
    if top_p < 1:
        assert np.all(np.abs(mass_up_to - (1 - top_p)) > 1e-3)  # no token sits on the nucleus' edge
    keep[ascending[mass_up_to <= 1 - top_p]] = False
    p = np.where(keep, p, 0.0)
    return p / p.sum()


@pytest.mark.parametrize("temperature, top_p, top_k", [(0.7, 0.9, None), (1.3, 0.8, 5), (1.0, 1.0, None)])
def test_gumbel_sampler_samples_the_warped_softmax(temperature, top_p, top_k):
    """40,000 seeds, each its own row, draw one token from one fixed logits vector: the frequencies
    are softmax(logits / T) cut to top_k and top_p (chi-square), and nothing outside it is drawn."""
    logits = torch.tensor([2.0, 1.6, 1.1, 0.7, 0.2, -0.3, -0.9, -1.5, -2.4, -4.0])
    n = 40_000
    sampler = answers.GumbelSampler([answers.question_seed(7, i) for i in range(n)], temperature, top_p, top_k)
    drawn = sampler(torch.zeros(n, 1, dtype=torch.long), logits.expand(n, -1).clone()).argmax(-1)
    counts = np.bincount(drawn.numpy(), minlength=len(logits))
    p = expected_distribution(logits, temperature, top_p, top_k)
    assert np.all(counts[p == 0] == 0)
    kept = p > 0
    assert chisquare(counts[kept], n * p[kept]).pvalue > 1e-3
    plain = torch.softmax(logits, -1).numpy()  # the test has power: the unwarped softmax is far off
    if (temperature, top_p, top_k) != (1.0, 1.0, None):
        assert chisquare(counts, n * plain).pvalue < 1e-9


def test_gumbel_noise_of_a_row_depends_on_its_seed_alone():
    scores = torch.randn(3, 50, generator=torch.Generator().manual_seed(0))
    alone = answers.GumbelSampler([11], 0.7, 0.9)
    batch = answers.GumbelSampler([5, 11, 7], 0.7, 0.9)
    for _ in range(3):  # step after step: each call advances every row's generator by one draw
        assert torch.equal(alone(None, scores[1:2].clone())[0], batch(None, scores.clone())[1])
    first, second = answers.GumbelSampler([11], 0.7, 0.9), answers.GumbelSampler([11], 0.7, 0.9)
    first(None, scores[1:2].clone())
    assert not torch.equal(first(None, scores[1:2].clone()), second(None, scores[1:2].clone()))  # a new draw per step


def test_question_seed_is_stable_and_distinct():
    assert (
        answers.question_seed(42, "q1") == answers.question_seed(42, "q1") == 1606191008811120158
    )  # SHA-256, not hash()
    seeds = {answers.question_seed(s, i) for s in (0, 1) for i in range(100)}
    assert len(seeds) == 200 and all(0 <= s < 2**63 for s in seeds)


def test_prompt_logits_barely_change_with_left_padding(tiny):
    """What batch-independence has to survive on the CPU in float32: a prompt's next-token logits
    left-padded in a batch against alone differ by float rounding only (not bitwise equal)."""
    model, tokenizer = tiny
    tokenizer.padding_side = "left"
    prompts = [
        tokenizer.apply_chat_template(
            chat_prompt(q), tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
        )
        for q in QUESTIONS
    ]
    with torch.inference_mode():
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        batched = model(**batch).logits[:, -1]
        alone = torch.cat(
            [model(**tokenizer([p], return_tensors="pt", add_special_tokens=False)).logits[:, -1] for p in prompts]
        )
    assert int((batch["attention_mask"] == 0).sum(1).min()) == 0 < int((batch["attention_mask"] == 0).sum(1).max())
    assert torch.allclose(batched, alone, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_sampled_answer_does_not_depend_on_its_batch(tiny):
    model, tokenizer = tiny
    batched, batched_tokens = answer(model, tokenizer, QUESTIONS, STUDY, IDS)
    by_id = dict(zip(IDS, zip(batched, batched_tokens)))
    for q, i in zip(QUESTIONS, IDS):  # each question alone, batch of one
        (record,), (tokens,) = answer(model, tokenizer, [q], STUDY, [i])
        assert tokens == by_id[i][1] and record == by_id[i][0]
    order = [5, 2, 0, 4, 1, 3]  # another order, batches of two: other neighbours, other positions, other padding
    shuffled, shuffled_tokens = answer(
        model, tokenizer, [QUESTIONS[k] for k in order], {**STUDY, "batch_size": 2}, [IDS[k] for k in order]
    )
    for k, record, tokens in zip(order, shuffled, shuffled_tokens):
        assert tokens == by_id[IDS[k]][1] and record == by_id[IDS[k]][0]
    assert len({tuple(t) for t in batched_tokens}) == len(QUESTIONS)  # real, distinct samples
    assert all(r["answer_tokens"] > 0 for r in batched)


@pytest.mark.slow
def test_reruns_repeat_and_seeds_matter(tiny):
    model, tokenizer = tiny
    first = answer(model, tokenizer, QUESTIONS, STUDY, IDS)
    assert answer(model, tokenizer, QUESTIONS, STUDY, IDS) == first
    _, other_seed = answer(model, tokenizer, QUESTIONS, {**STUDY, "seed": 43}, IDS)
    assert sum(a != b for a, b in zip(first[1], other_seed)) >= 1
    _, other_ids = answer(model, tokenizer, QUESTIONS, STUDY, [f"x{i}" for i in IDS])
    assert sum(a != b for a, b in zip(first[1], other_ids)) >= 1  # the id is part of the seed
    _, by_position = answer(model, tokenizer, QUESTIONS, STUDY, None)
    assert answer(model, tokenizer, QUESTIONS, STUDY, list(range(len(QUESTIONS))))[1] == by_position


@pytest.mark.parametrize("penalty", [1.0, 1.3])
def test_greedy_is_hugging_faces_plain_greedy(tiny, penalty):
    """do_sample: false answers what generate(do_sample=False) gives each prompt alone, unpadded."""
    model, tokenizer = tiny
    generation = {**GREEDY, "repetition_penalty": penalty}
    records, tokens = answer(model, tokenizer, QUESTIONS, generation, IDS)
    for q, record, got in zip(QUESTIONS, records, tokens):
        prompt = tokenizer.apply_chat_template(
            chat_prompt(q), tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
        )
        enc = tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
        out = model.generate(
            **enc, max_new_tokens=16, do_sample=False, repetition_penalty=penalty, pad_token_id=tokenizer.pad_token_id
        )
        reference = out[0, enc["input_ids"].shape[1] :].tolist()
        assert got == reference
        assert record["answer"] == tokenizer.decode(reference, skip_special_tokens=True).strip()


@pytest.mark.slow
@pytest.mark.parametrize("window_slots", [4, decoding.WINDOW_SLOTS])
def test_the_decoding_loop_is_generate_over_a_padded_batch_sampled_and_penalised(tiny, window_slots):
    """decoding.decode (static cache, 4D masks, its own positions, attention over a window of the
    filled slots: 4 slots moves the window every 4 steps) makes the tokens generate() makes for the
    same left-padded batch, repetition penalty and Gumbel sampler, over generate()'s dynamic cache
    and over its static one."""
    model, tokenizer = tiny
    prompts = [
        tokenizer.apply_chat_template(
            chat_prompt(q), tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
        )
        for q in QUESTIONS
    ]
    tokenizer.padding_side = "left"
    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    assert (enc["attention_mask"] == 0).any()  # prompts of different lengths: padding in the batch

    def sampler():
        seeds = [answers.question_seed(42, i) for i in IDS]
        return [answers.GumbelSampler(seeds, 0.7, 0.9, answers.inherited_top_k(model))]

    eos = torch.tensor(answers.eos_token_ids(model, tokenizer))
    ours = answers.decode(
        model,
        enc["input_ids"],
        enc["attention_mask"],
        24,
        answers.processors(1.2, sampler()),
        eos,
        tokenizer.pad_token_id,
        cuda_graph=False,
        window_slots=window_slots,
    )
    for cache in (None, "static"):
        out = model.generate(
            **enc,
            max_new_tokens=24,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            repetition_penalty=1.2,
            logits_processor=LogitsProcessorList(sampler()),
            pad_token_id=tokenizer.pad_token_id,
            cache_implementation=cache,
        )
        theirs = out[:, enc["input_ids"].shape[1] :]
        assert ours[:, : theirs.shape[1]].tolist() == theirs.tolist(), cache
        assert (ours[:, theirs.shape[1] :] == tokenizer.pad_token_id).all()  # past every end: padding only


class EndAt:
    """A forward hook on lm_head that makes row r end (EOS) at step stop[r] and never before nor,
    where stop[r] is None, at all: answers of known lengths from a random model."""

    def __init__(self, stop: list[int | None], eos: int):
        self.stop, self.eos, self.step = stop, eos, 0

    def __call__(self, module, args, logits):
        logits = logits.clone()
        for row, step in enumerate(self.stop):
            logits[row, -1, self.eos] = 1e4 if step == self.step else -1e4
        self.step += 1
        return logits


@pytest.mark.parametrize("generation", [STUDY, GREEDY], ids=["sampled", "greedy"])
def test_hit_token_limit_only_for_answers_cut_at_max_new_tokens(tiny, generation):
    model, tokenizer = tiny
    limit, stop = 6, [2, None, 0, 5]  # EOS as 3rd token; never; at once; as the very last allowed token
    hook = model.lm_head.register_forward_hook(EndAt(stop, tokenizer.eos_token_id))
    try:
        records = answers.answer_questions(
            model, tokenizer, QUESTIONS[:4], {**generation, "max_new_tokens": limit, "batch_size": 4}
        )
    finally:
        hook.remove()
    assert [r["answer_tokens"] for r in records] == [2, 6, 0, 5]  # EOS and the padding after it not counted
    assert [r["hit_token_limit"] for r in records] == [False, True, False, False]
    assert records[2]["answer"] == ""


def test_generate_answers_records_carry_hit_token_limit(tiny, tiny_manifest):
    import generate_answers

    model, tokenizer = tiny
    test = [{"id": i, "question": q} for i, q in zip(IDS, QUESTIONS)]
    records, stats = generate_answers.generate_answers(tiny_manifest, None, test, STUDY, QUANT, "cpu", 1)
    assert stats["device"] == "cpu" and stats["questions"] == len(test) and stats["peak_gpu_gib"] is None
    # 6 questions, at most 6 a batch: one batch of the dequantised model, well within 1 GiB; no adapter
    assert (stats["form"], stats["batch_size"], stats["memory_budget_gib"]) == ("dequantised, no adapter", 6, 1)
    assert stats["answer_tokens"] == sum(r["answer_tokens"] for r in records) > 0
    # generate_s is rounded to the millisecond: on a fast CPU run that alone moves the ratio a few %
    rounding = 0.0005 / stats["generate_s"]
    assert stats["tokens_per_s"] == pytest.approx(stats["answer_tokens"] / stats["generate_s"], rel=rounding + 0.001)
    assert [set(r) for r in records] == [
        {"id", "question", "answer", "prompt_tokens", "answer_tokens", "hit_token_limit", "generation"}
    ] * len(test)
    assert [r["id"] for r in records] == IDS and all(r["generation"] == STUDY for r in records)
    for r in records:  # what the judge and the paper read (scripts/huatuo_study/schemas/answer.yaml)
        check_record(r, "answer", "generations")
    assert records == [
        {"id": i, **a, "generation": STUDY}
        for i, a in zip(IDS, answers.answer_questions(model, tokenizer, QUESTIONS, STUDY, IDS))
    ]


def test_repetition_penalty_over_a_seen_mask_is_transformers_own():
    """Step by step over a growing sequence, the mask-based penalty gives exactly the scores of
    transformers' RepetitionPenaltyLogitsProcessor (positive and negative scores, repeated ids)."""
    from transformers import RepetitionPenaltyLogitsProcessor

    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 50, (3, 7), generator=generator)
    ours, theirs = decoding.RepetitionPenalty(1.3), RepetitionPenaltyLogitsProcessor(1.3)
    for _ in range(5):
        scores = torch.randn(3, 50, generator=generator)
        assert torch.equal(ours(ids, scores.clone()), theirs(ids, scores.clone()))
        ids = torch.cat([ids, torch.randint(0, 50, (3, 1), generator=generator)], dim=-1)


@pytest.mark.parametrize("generation", [GREEDY, STUDY], ids=["greedy", "sampled"])
def test_repetition_penalty_is_applied(tiny, generation):
    """The random model, greedy, repeats one token; a huge penalty (Hugging Face's processor, on the
    prompt and the answer so far, before temperature) leaves no token generated twice nor any token
    of the prompt."""
    model, tokenizer = tiny
    _, plain = answer(model, tokenizer, QUESTIONS, {**GREEDY, "repetition_penalty": 1.0}, IDS)
    assert all(len(set(t)) < len(t) for t in plain)
    _, penalised = answer(
        model, tokenizer, QUESTIONS, {**generation, "max_new_tokens": 16, "repetition_penalty": 1e3}, IDS
    )
    for q, tokens in zip(QUESTIONS, penalised):
        prompt = tokenizer.apply_chat_template(
            chat_prompt(q), tokenize=False, add_generation_prompt=True, **CHAT_TEMPLATE_KWARGS
        )
        assert len(tokens) == 16 and len(set(tokens)) == 16
        assert not set(tokens) & set(tokenizer(prompt, add_special_tokens=False)["input_ids"])
