"""Stage test set: the course's file (a JSON list of [question, baseline_answer]) or a slice of
the held-out split (already shuffled by split_data; held-out test sets take disjoint slices, in
config order, run_plan.heldout_slice). A test question that also appears in train or val stops the
run: the comparison would measure memorisation."""

import json

from huatuo_study.common import DataError, PipelineError, log, normalize_text, read_jsonl, run_stage, write_jsonl


def read_course_file(path: str) -> list[dict]:
    """[[question, baseline_answer], ...] -> records; ids are the 1-based positions."""
    try:
        with open(path, encoding="utf-8") as f:
            pairs = json.load(f)
    except FileNotFoundError:
        raise PipelineError(f"test.source: course file '{path}' does not exist") from None
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"not valid JSON ({e.msg})") from None
    if not isinstance(pairs, list) or not pairs:
        raise DataError(path, None, None, "expected a non-empty JSON list of [question, baseline_answer]")
    records = []
    for i, pair in enumerate(pairs, 1):
        ok = isinstance(pair, list) and len(pair) == 2 and all(isinstance(x, str) and x.strip() for x in pair)
        if not ok:
            raise DataError(path, None, f"item {i}", "expected [question, baseline_answer], two non-empty strings")
        records.append({"id": i, "question": pair[0].strip(), "reference": None, "baseline_answer": pair[1].strip()})
    return records


def with_copies(test: list[dict], copies: int) -> list[dict]:
    """Each question `copies` times, copy k of question i with id "i.k" (its own sampling seed);
    the questions as they are for one copy."""
    if copies == 1:
        return test
    return [{**t, "id": f"{t['id']}.{k}"} for k in range(1, copies + 1) for t in test]


def draw_from_heldout(heldout: list[dict], start: int, stop: int) -> list[dict]:
    if stop > len(heldout):
        raise PipelineError(
            f"test_sets: held-out rows [{start}, {stop}) asked for (the held-out test sets "
            f"take disjoint slices, in config order), but the held-out split has {len(heldout)}"
        )
    rows = heldout[start:stop]
    return [{"id": r["id"], "question": r["question"], "reference": r["answer"], "baseline_answer": None} for r in rows]


def check_leakage(test: list[dict], splits: dict[str, list[dict]]) -> None:
    seen = {normalize_text(r["question"]): (name, r["id"]) for name, rows in splits.items() for r in rows}
    leaks = [(t["id"], *seen[normalize_text(t["question"])]) for t in test if normalize_text(t["question"]) in seen]
    if leaks:
        where = "; ".join(f"test {tid} = {name} id {sid}" for tid, name, sid in leaks[:5])
        raise PipelineError(f"test set leaks into training data ({len(leaks)} questions): {where}")


def main(smk):
    p = smk.params
    if p.source == "heldout":
        test = draw_from_heldout(read_jsonl(smk.input.heldout), p.heldout_slice["start"], p.heldout_slice["stop"])
    else:
        test = read_course_file(smk.input.source[0])[: p.n]
    test = with_copies(test, p.copies)
    check_leakage(test, {"train": read_jsonl(smk.input.train), "val": read_jsonl(smk.input.val)})
    write_jsonl(smk.output[0], test)
    log.info("Test set %s: %d questions from %s", smk.wildcards.test_set, len(test), p.source)


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
