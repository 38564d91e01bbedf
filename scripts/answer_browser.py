"""Stage answer browser: one static HTML page per run for reading answers and the judges' replies
side by side (as FastChat's qa_browser does for MT-bench), offline, with no server. Per test set
and question: the question, its reference answer where the test set has one, the baseline's
answer, then every setting's and control's answer per replicate, each with every judge's verdict
and full reply in both orders (every call, a retry included). Filters: test set, setting, judge,
verdict, the two orders (a win/loss flip, any disagreement), the judges' disagreement, and a search
over all the text.

The page is rendered by jinja2 with autoescaping (answers and replies are arbitrary text); the
filters read an index embedded as JSON (jinja2's tojson escapes <, >, & and ', so no text can end
the script element) and show or hide the rendered rows; no script or style is fetched from
anywhere."""

from pathlib import Path

import jinja2

from huatuo_study.common import DataError, PipelineError, log, run_stage, write_text
from huatuo_study.judging.verdicts import is_order_flip, read_runs
from huatuo_study.records import read_records

TEMPLATE = Path(__file__).resolve().parent / "templates" / "answer_browser.html.j2"
ORDER_TITLES = {
    "setting_first": "the setting's answer shown first (Assistant 1)",
    "baseline_first": "the baseline's answer shown first (Assistant 1)",
}


def orders_disagree(record: dict) -> bool:
    """The two orders gave different valid outcomes (`consistent` false; a flip or a tie against
    a win or a loss)."""
    return record["consistent"] is False


def judges_disagree(verdicts: list[str]) -> bool:
    """The judges' valid verdicts on one answer differ; an invalid verdict is left out, as the
    judges' agreement table leaves it out."""
    return len({v for v in verdicts if v != "invalid"}) > 1


def by_id(records: list[tuple[int | None, dict]], path, test_ids: list[str]) -> dict[str, dict]:
    """A file's (line number, record) pairs by question id (as text): exactly the test set's
    questions, each once."""
    found = {}
    for lineno, record in records:
        qid = str(record["id"])
        if qid in found:
            raise DataError(path, lineno, "id", f"question {qid!r} appears twice")
        if qid not in test_ids:
            raise DataError(path, lineno, "id", f"question {qid!r} is not in the test set")
        found[qid] = record
    if missing := [q for q in test_ids if q not in found]:
        raise DataError(path, None, "id", f"no record of question {missing[0]!r} ({len(missing)} missing)")
    return found


def judgement(judge: str, record: dict) -> dict:
    return {
        "judge": judge,
        "verdict": record["verdict"],
        "consistent": record["consistent"],
        "flip": is_order_flip(record),
        "orders_disagree": orders_disagree(record),
        "orders": [
            {
                "order": o["order"],
                "title": ORDER_TITLES[o["order"]],
                "label": o.get("label"),
                "outcome": o["outcome"],
                "calls": [{"reply": c["reply"], "label": c["label"]} for c in o.get("calls", [])],
            }
            for o in record["orders"]
        ],
    }


def test_set_view(
    name: str,
    test: list[dict],
    baseline: dict[str, dict],
    answers: dict[tuple[str, int], dict],
    verdicts: dict[str, dict[tuple[str, int], dict]],
) -> dict:
    """One test set's questions in test order, each with its answers per setting (config order) and
    replicate, each answer with every judge's judgement (judges in config order).
    answers: (setting, replicate) -> question id -> answer record;
    verdicts: judge -> (setting, replicate) -> question id -> verdict record."""
    questions = []
    for t in test:
        qid = str(t["id"])
        runs = []
        for (setting, replicate), by_question in answers.items():
            answer = by_question[qid]
            judgements = [judgement(j, runs_of_judge[setting, replicate][qid]) for j, runs_of_judge in verdicts.items()]
            runs.append(
                {
                    "setting": setting,
                    "replicate": replicate,
                    "answer": answer["answer"],
                    "hit_token_limit": answer.get("hit_token_limit", False),
                    "judgements": judgements,
                    "judges_disagree": judges_disagree([j["verdict"] for j in judgements]),
                }
            )
        questions.append(
            {
                "id": qid,
                "question": t["question"],
                "reference": t.get("reference"),
                "baseline": baseline[qid]["answer"],
                "runs": runs,
            }
        )
    return {"name": name, "questions": questions}


def filter_index(views: list[dict]) -> list[dict]:
    """What the page's filters read, one entry per answer row, in page order; row i is the
    element with id row-i."""
    return [
        {
            "test_set": view["name"],
            "setting": run["setting"],
            "replicate": run["replicate"],
            "verdict": {j["judge"]: j["verdict"] for j in run["judgements"]},
            "flip": {j["judge"]: j["flip"] for j in run["judgements"]},
            "orders_disagree": {j["judge"]: j["orders_disagree"] for j in run["judgements"]},
            "judges_disagree": run["judges_disagree"],
        }
        for view in views
        for question in view["questions"]
        for run in question["runs"]
    ]


def render(context: dict, template: Path = TEMPLATE) -> str:
    """The page; jinja2 escapes every value (autoescape), StrictUndefined stops on a missing key."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template.parent)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.policies["json.dumps_kwargs"] = {"ensure_ascii": False, "sort_keys": False}
    return env.get_template(template.name).render(**context)


def page_context(
    run: str, views: list[dict], judges: dict[str, str], titles: dict[str, str], controls: list[str]
) -> dict:
    """judges: judge name -> its backend and model, for the page; titles: setting -> display title."""
    return {
        "run": run,
        "views": views,
        "judges": judges,
        "titles": titles,
        "controls": controls,
        "index": filter_index(views),
    }


def read_test_set(
    name: str,
    test_path,
    baseline_path,
    answer_paths: list[str],
    verdict_paths: dict[str, list[str]],
    settings: list[str],
    replicates: int,
) -> dict:
    """One test set's files through the shared readers (records.py, verdicts.py): the view of it."""
    test = [record for _, record in read_records(test_path, "test_question")]
    ids = [str(t["id"]) for t in test]
    runs = [(s, r) for s in settings for r in range(replicates)]  # rules/common.smk runs_of order
    if len(answer_paths) != len(runs):
        raise PipelineError(
            f"{name}: {len(answer_paths)} answer files for {len(settings)} settings x {replicates} replicates"
        )
    baseline = by_id(read_records(baseline_path, "answer"), baseline_path, ids)
    answers = {run: by_id(read_records(path, "answer"), path, ids) for run, path in zip(runs, answer_paths)}
    verdicts = {}
    for judge, paths in verdict_paths.items():
        # read_runs keeps no line numbers: a duplicate or stray question is named by file and id.
        verdicts[judge] = {
            run: by_id([(None, r) for r in records], path, ids)
            for (run, records), path in zip(read_runs(paths, settings, replicates).items(), paths)
        }
    return test_set_view(name, test, baseline, answers, verdicts)


def main(smk) -> None:
    p, i = smk.params, smk.input
    settings, test_sets, judges = list(p.settings), list(p.test_sets), list(p.judges)
    per_judge = len(settings) * p.replicates
    answer_paths, verdict_paths = list(i.answers), list(i.verdicts)
    if len(verdict_paths) != len(test_sets) * len(judges) * per_judge:
        raise PipelineError(
            f"{len(verdict_paths)} verdict files for {len(test_sets)} test sets x {len(judges)} "
            f"judges x {per_judge} runs"
        )
    views = []
    for k, name in enumerate(test_sets):
        # Inputs in the rule's order: test sets, then (verdicts) judges, then runs_of order.
        answers = answer_paths[k * per_judge : (k + 1) * per_judge]
        first = k * len(judges) * per_judge
        verdicts = {j: verdict_paths[first + m * per_judge : first + (m + 1) * per_judge] for m, j in enumerate(judges)}
        views.append(read_test_set(name, i.test[k], i.baseline[k], answers, verdicts, settings, p.replicates))
    context = page_context(p.run, views, dict(p.judges), dict(p.titles), list(p.controls))
    write_text(smk.output.html, render(context, Path(i.template)))
    log.info(
        "Wrote the answer browser of %d test sets, %d answer rows, %d judges to %s",
        len(views),
        len(context["index"]),
        len(judges),
        smk.output.html,
    )


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
