"""The paper's case study: one test question (config paper.case_study, 1-based) with the
beginning of the baseline's answer and of every setting's."""

from collections.abc import Mapping

from huatuo_study.common import PipelineError
from huatuo_study.paper.formatting import EXCERPT_CHARS, UNDECODABLE, excerpt, need, oneline


def _answer_of(records: list[dict], qid: str, what: str) -> str:
    for record in records:
        if record.get("id") == qid:
            return need(record, "answer", f"{what}, id {qid}")
    raise PipelineError(f"{what}: no answer for the case-study question (id {qid})")


def case_study(
    config: Mapping, test: list[dict], baseline: list[dict], generations: Mapping[str, list[dict]], settings: list[dict]
) -> dict:
    index = need(need(config, "paper", "config"), "case_study", "config 'paper'")
    if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= len(test):
        raise PipelineError(
            f"config paper.case_study: {index!r} is not a question number "
            f"between 1 and {len(test)} (the test set's size)"
        )
    question = test[index - 1]
    qid = need(question, "id", f"test set record {index}")
    answers = []
    for s in settings:
        if s["key"] not in generations:
            raise PipelineError(f"no generations for setting '{s['key']}'")
        answer = _answer_of(generations[s["key"]], qid, f"generations of {s['key']}")
        answers.append({"k": s["k"], "title": s["title"], **excerpt(answer)})
    baseline_answer = excerpt(_answer_of(baseline, qid, "baseline answers"))
    return {
        "index": index,
        "id": oneline(qid),
        "question": oneline(need(question, "question", f"test set record {index}")),
        "baseline": baseline_answer,
        "answers": answers,
        "excerpt_chars": EXCERPT_CHARS,
        # The paper marks these characters and says why, where an excerpt has one.
        "undecodable": any(UNDECODABLE in a["text"] for a in [baseline_answer, *answers]),
    }
