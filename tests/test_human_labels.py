"""Human labels: the blind sheet (label_sheet.py, human_label_sheet.py) hides whose answer is whose,
draws the order per row and is the same for the same seed; its HTML form downloads what the
import reads; the import (human_agreement.py) un-blinds it with the key, refuses bad rows naming
file, line and field, and gives each judge's agreement with people by the judges' statistics,
checked against hand computations."""

import csv
import io
import json
import math
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

import human_agreement
import human_label_sheet
from conftest import REPO, fake_snakemake
from dag import DEMO, JUDGES, PAPER_JOBS, TEST_SETS, overlay, planned_jobs, snakemake
from huatuo_study.common import DataError, PipelineError
from huatuo_study.judging.label_sheet import (
    KEY_COLUMNS,
    SHEET_COLUMNS,
    pair_check,
    read_filled_sheet,
    read_key,
    unblind,
    verdict_of,
)
from huatuo_study.statistics.agreement_stats import ORDER, weighted_kappa

TEMPLATE = REPO / "scripts" / "templates" / "label_sheet.html.j2"
SETTINGS = ["setting1", "control-s"]
REPLICATES = 2
# Question ids per test set; the first question's text is hard to quote (CSV and HTML alike).
QUESTIONS = {"small": ["q1", "q2", "q3", "q4", "q5"], "large": ["q6", "q7", "q8", "q9"]}
HARD = '头痛, "发热"\n怎么办? </script><b>'


def question_text(qid: str) -> str:
    return HARD if qid == "q1" else f"问题{qid}：头痛怎么办？"


def our_answer(test_set, setting, replicate, qid) -> str:
    """Distinct text per run and question: the test finds whose answer a sheet shows by its text alone."""
    return f'回答 {SETTINGS.index(setting)}-{replicate}-{qid}, "多喝水"\n休息。'


def their_answer(qid) -> str:
    return f"参考回答 {qid}：请就医。"


WHOSE = {
    our_answer(t, s, r, q): (t, q, s, r)
    for t, ids in QUESTIONS.items()
    for s in SETTINGS
    for r in range(REPLICATES)
    for q in ids
}


def write_jsonl(path: Path, records) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def run_files(root: Path) -> dict:
    """The sheet rule's inputs: answers per test set, setting and replicate; baselines per test set."""
    answers = [
        write_jsonl(
            root / "generations" / t / s / f"rep{r}.jsonl",
            [{"id": q, "question": question_text(q), "answer": our_answer(t, s, r, q)} for q in ids],
        )
        for t, ids in QUESTIONS.items()
        for s in SETTINGS
        for r in range(REPLICATES)
    ]
    baselines = [
        write_jsonl(
            root / "baseline" / f"{t}.jsonl",
            [{"id": q, "question": question_text(q), "answer": their_answer(q)} for q in ids],
        )
        for t, ids in QUESTIONS.items()
    ]
    return {"answers": answers, "baselines": baselines, "template": str(TEMPLATE)}


def export_sheet(tmp_path: Path, seed=0, pairs=6, out="out"):
    folder = tmp_path / out
    smk = fake_snakemake(
        input=run_files(tmp_path / "run"),
        output={
            "csv": str(folder / "sheet" / "sheet.csv"),
            "html": str(folder / "sheet" / "sheet.html"),
            "key": str(folder / "key.csv"),
        },
        params={
            "run": "test",
            "test_sets": list(QUESTIONS),
            "settings": SETTINGS,
            "replicates": REPLICATES,
            "pairs_per_test_set": pairs,
            "seed": seed,
        },
    )
    human_label_sheet.main(smk)
    return smk.output


def read_csv(path) -> list[dict]:
    with open(path, encoding="utf-8-sig", newline="") as f:
        return list(csv.DictReader(f))


def write_filled(path: Path, rows: list[dict], columns=SHEET_COLUMNS) -> str:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def ours_position(row: dict) -> str:
    """Which letter shows our answer, found from the texts as a reader of the sheet could not."""
    return "A" if row["answer_a"] in WHOSE else "B"


# --------------------------------------------------------------------------- the sheet


def test_the_sheet_hides_whose_answer_and_the_key_says_it(tmp_path):
    out = export_sheet(tmp_path)
    rows, key = read_csv(out.csv), read_csv(out.key)
    assert list(rows[0]) == SHEET_COLUMNS and list(key[0]) == KEY_COLUMNS
    assert len(rows) == len(key) == 12  # 6 pairs from each test set
    assert [r["row"] for r in rows] == [r["row"] for r in key] == [str(k) for k in range(1, 13)]
    assert {r["label"] for r in rows} == {""}
    # Nothing in the sheet or its form names a setting, a replicate, the baseline or the order.
    for path in (out.csv, out.html):
        text = Path(path).read_text(encoding="utf-8")
        for word in (*SETTINGS, "baseline", "setting_first", "rep0", "rep1", "replicate", "test_set"):
            assert word not in text, (path, word)
    for row, k in zip(rows, key):
        # One answer is a setting's, the other the baseline's to the same question; the key says which.
        ours = row["answer_a"] if ours_position(row) == "A" else row["answer_b"]
        theirs = row["answer_b"] if ours_position(row) == "A" else row["answer_a"]
        test_set, qid, setting, replicate = WHOSE[ours]
        assert theirs == their_answer(qid) and row["question"] == question_text(qid)
        assert (k["test_set"], k["id"], k["setting"], k["replicate"]) == (test_set, qid, setting, str(replicate))
        assert k["order"] == ("setting_first" if ours_position(row) == "A" else "baseline_first")
        assert row["check"] == k["check"] == pair_check(row["question"], row["answer_a"], row["answer_b"])
    # Both positions are used, and the rows are shuffled across test sets and settings.
    assert {k["order"] for k in key} == {"setting_first", "baseline_first"}
    test_sets = [k["test_set"] for k in key]
    assert sorted(test_sets, key=list(QUESTIONS).index) != test_sets
    assert test_sets.count("small") == test_sets.count("large") == 6
    assert len({(k["test_set"], k["id"], k["setting"], k["replicate"]) for k in key}) == 12  # no pair twice


def test_the_same_seed_gives_the_same_sheet_and_another_seed_another(tmp_path):
    first, again, other = (export_sheet(tmp_path, seed=s, out=o) for s, o in ((0, "a"), (0, "b"), (1, "c")))
    for name in ("csv", "html", "key"):
        assert Path(getattr(first, name)).read_bytes() == Path(getattr(again, name)).read_bytes()
    assert Path(first.key).read_text() != Path(other.key).read_text()


def test_a_test_set_smaller_than_the_sample_gives_all_its_pairs(tmp_path):
    key = read_csv(export_sheet(tmp_path, pairs=17).key)  # large has 4 questions x 4 runs = 16 pairs
    assert sum(k["test_set"] == "large" for k in key) == 16
    assert sum(k["test_set"] == "small" for k in key) == 17


def test_a_question_without_baseline_answer_stops_the_sheet(tmp_path):
    files = run_files(tmp_path / "run")
    write_jsonl(Path(files["baselines"][1]), [{"id": "q6", "question": "?", "answer": "x"}])
    smk = fake_snakemake(
        input=files,
        output={"csv": str(tmp_path / "s.csv"), "html": str(tmp_path / "s.html"), "key": str(tmp_path / "k.csv")},
        params={
            "run": "t",
            "test_sets": list(QUESTIONS),
            "settings": SETTINGS,
            "replicates": REPLICATES,
            "pairs_per_test_set": 3,
            "seed": 0,
        },
    )
    with pytest.raises(DataError, match=r"large\.jsonl: field 'id': no baseline answer to question 'q7' of large"):
        human_label_sheet.main(smk)
    assert not (tmp_path / "k.csv").exists()


class _Scripts(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.radios, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self._in = attrs.get("type", "text/javascript")
            self.scripts.append([self._in, ""])
        if tag == "input" and attrs.get("type") == "radio":
            self.radios.append((attrs["name"], attrs["value"]))

    def handle_endtag(self, tag):
        if tag == "script":
            self._in = None

    def handle_data(self, data):
        if self._in is not None:
            self.scripts[-1][1] += data


def test_the_form_shows_every_row_and_downloads_what_the_import_reads(tmp_path):
    out = export_sheet(tmp_path)
    page = _Scripts()
    page.feed(Path(out.html).read_text(encoding="utf-8"))
    (_, data), (_, code) = page.scripts
    rows = read_csv(out.csv)
    embedded = json.loads(data)
    assert [{k: str(v) for k, v in r.items()} for r in embedded] == rows  # the hard question survives intact
    assert HARD in {r["question"] for r in embedded}
    assert "</script><b>" not in data  # escaped inside the script element
    assert page.radios == [(f"label-{k}", v) for k in range(1, 13) for v in ("A", "B", "tie")]
    if shutil.which("node") is None:
        pytest.skip("node (Debian's nodejs) not installed: the form's script is not run")
    # The form's own CSV writer, run by node on the embedded rows: with no labels it writes
    # sheet.csv byte for byte; with labels, a file the import reads back as chosen.
    chosen = {1: "A", 2: "B", 3: "tie", 5: "B"}

    def download(labels):
        script = f"{code}\nprocess.stdout.write(filledCsv({data}, {json.dumps(labels)}));"
        return subprocess.run(["node", "-e", script], capture_output=True, check=True).stdout

    assert download({}) == Path(out.csv).read_bytes()
    filled = tmp_path / "filled.csv"
    filled.write_bytes(download({str(k): v for k, v in chosen.items()}))
    labels = read_filled_sheet(filled, read_key(out.key))
    assert labels == [{"row": k, "label": v} for k, v in sorted(chosen.items())]


# --------------------------------------------------------------------------- the import


def test_the_import_unblinds_each_label_into_the_settings_verdict(tmp_path):
    out = export_sheet(tmp_path)
    rows = read_csv(out.csv)
    truth = {}
    for k, row in enumerate(rows):
        ours = ours_position(row)
        theirs = "B" if ours == "A" else "A"
        # Our answer chosen, theirs chosen, a tie, lower case, and a row left empty, in turn.
        row["label"], truth[int(row["row"])] = [
            (ours, "win"),
            (theirs, "loss"),
            ("tie", "tie"),
            (ours.lower(), "win"),
            ("", None),
        ][k % 5]
    key = read_key(out.key)
    labels = unblind(read_filled_sheet(write_filled(tmp_path / "filled.csv", rows), key), key)
    assert [r["row"] for r in labels] == sorted(r for r, v in truth.items() if v)
    for r in labels:
        assert r["verdict"] == truth[r["row"]]
        test_set, qid, setting, replicate = WHOSE[
            next(
                (x["answer_a"] if ours_position(x) == "A" else x["answer_b"]) for x in rows if int(x["row"]) == r["row"]
            )
        ]
        assert (r["test_set"], r["id"], r["setting"], r["replicate"]) == (test_set, qid, setting, replicate)


def test_verdict_of_a_label():
    assert [verdict_of(label, "setting_first") for label in ("A", "B", "tie")] == ["win", "loss", "tie"]
    assert [verdict_of(label, "baseline_first") for label in ("A", "B", "tie")] == ["loss", "win", "tie"]


def filled_sheet(tmp_path):
    """A filled sheet whose first row is labelled A; its key."""
    out = export_sheet(tmp_path)
    rows = read_csv(out.csv)
    rows[0]["label"] = "A"
    return rows, read_key(out.key)


def start_line(rows: list[dict], index: int) -> int:
    """The file line on which rows[index] starts: the header is line 1, and a record takes one line
    more per line break inside its cells (the answers have some)."""
    return 2 + sum(1 + sum(str(v).count("\n") for v in row.values()) for row in rows[:index])


# (change to the filled rows, index of the bad row, field, message)
BAD_ROWS = [
    (lambda rows: rows[1].update(label="C"), 1, "label", r"'C' is not one of A, B, tie"),
    (lambda rows: rows[1].update(label="yes"), 1, "label", r"'yes' is not one of A, B, tie"),
    (lambda rows: rows[1].update(row="13"), 1, "row", r"'13' is not a row of the sheet's key \(rows 1 to 12\)"),
    (lambda rows: rows[1].update(row="two"), 1, "row", r"'two' is not a row of the sheet's key"),
    (lambda rows: rows[2].update(row=rows[0]["row"]), 2, "row", r"row 1 appears twice \(first on line 2\)"),
    (
        lambda rows: rows[1].update(check="0123456789ab"),
        1,
        "check",
        r"'0123456789ab' is not the key's '[0-9a-f]{12}' for row 2: these labels were given to other answers",
    ),
]


@pytest.mark.parametrize("change, index, field, message", BAD_ROWS)
def test_a_bad_row_stops_the_import_naming_file_line_and_field(tmp_path, change, index, field, message):
    rows, key = filled_sheet(tmp_path)
    change(rows)
    path = write_filled(tmp_path / "filled.csv", rows)
    with pytest.raises(DataError, match=message) as error:
        read_filled_sheet(path, key)
    line = start_line(rows, index)
    assert (error.value.path, error.value.line, error.value.field) == (path, line, field)
    assert str(error.value).startswith(f"{path}, line {line}: field '{field}': ")


def test_a_missing_column_or_a_short_row_or_no_label_stops_the_import(tmp_path):
    rows, key = filled_sheet(tmp_path)
    path = write_filled(tmp_path / "no_label.csv", rows, columns=["row", "question", "check"])
    with pytest.raises(
        DataError,
        match=r"no_label\.csv, line 1: field 'label': missing column \(the header has row, "
        r"question, check\)",
    ):
        read_filled_sheet(path, key)
    text = Path(write_filled(tmp_path / "short.csv", rows)).read_text(encoding="utf-8")
    short = tmp_path / "short.csv"
    short.write_text(text + "5,only a question\r\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"short\.csv, line \d+: 6 fields expected, as in the header"):
        read_filled_sheet(short, key)
    for row in rows:
        row["label"] = ""
    with pytest.raises(DataError, match=r"empty\.csv: field 'label': no row is labelled"):
        read_filled_sheet(write_filled(tmp_path / "empty.csv", rows), key)
    with pytest.raises(DataError, match=r"nowhere\.csv: file not found"):
        read_filled_sheet(tmp_path / "nowhere.csv", key)


def test_a_spreadsheet_saved_file_reads(tmp_path):
    """A byte-order mark and cells padded with spaces, as spreadsheets may leave them."""
    rows, key = filled_sheet(tmp_path)
    rows[0]["label"], rows[1]["label"] = " a ", "Tie"
    out = io.StringIO()
    csv.DictWriter(out, fieldnames=SHEET_COLUMNS).writeheader()
    csv.DictWriter(out, fieldnames=SHEET_COLUMNS).writerows(rows)
    path = tmp_path / "saved.csv"
    path.write_bytes(b"\xef\xbb\xbf" + out.getvalue().encode("utf-8"))
    assert read_filled_sheet(path, key) == [{"row": 1, "label": "A"}, {"row": 2, "label": "tie"}]


def test_a_bad_key_stops_the_import(tmp_path):
    out = export_sheet(tmp_path)
    text = Path(out.key).read_text(encoding="utf-8")
    bad = tmp_path / "key.csv"
    bad.write_text(re.sub(r"(setting|baseline)_first", "first", text, count=1), encoding="utf-8")
    with pytest.raises(DataError, match=r"key\.csv, line 2: field 'order': expected setting_first or baseline_first"):
        read_key(bad)


# --------------------------------------------------------------------------- agreement


def labelled(test_set, pairs):
    """Un-blinded rows: (question id, setting, the person's verdict) on replicate 0."""
    return [
        {
            "row": k,
            "test_set": test_set,
            "id": q,
            "setting": s,
            "replicate": 0,
            "order": "setting_first",
            "label": "",
            "verdict": v,
        }
        for k, (q, s, v) in enumerate(pairs, 1)
    ]


def verdict_runs(pairs_by_judge):
    """(test set, judge) -> (setting, replicate) -> verdict records, from (id, setting, verdict)."""
    runs = {}
    for (test_set, judge), pairs in pairs_by_judge.items():
        by_run = runs.setdefault((test_set, judge), {(s, 0): [] for s in SETTINGS})
        for q, s, v in pairs:
            by_run[s, 0].append({"id": q, "verdict": v})
    return runs


# Six labelled pairs on five questions (q1 twice: two settings). The primary judge says what the
# person says except on two pairs, each flipped between win and loss.
PERSON = [
    ("q1", "setting1", "win"),
    ("q1", "control-s", "win"),
    ("q2", "setting1", "loss"),
    ("q3", "setting1", "loss"),
    ("q4", "setting1", "win"),
    ("q5", "setting1", "tie"),
]
PRIMARY = [
    ("q1", "setting1", "win"),
    ("q1", "control-s", "win"),
    ("q2", "setting1", "win"),
    ("q3", "setting1", "loss"),
    ("q4", "setting1", "loss"),
    ("q5", "setting1", "tie"),
]


def test_agreement_with_people_by_hand():
    # Person (rows) x primary judge (columns), loss/tie/win: [[1, 0, 1], [0, 1, 0], [1, 0, 2]], n = 6.
    # Agreement 4/6. Linear weights |i - j| / 2: observed disagreement 2 reversals of weight 1 = 2/6;
    # margins (2, 1, 3)/6 both ways, expected disagreement
    #   2 (1/2 (1/3 1/6) + 1 (1/3 1/2) + 1/2 (1/6 1/2)) = 2 (1/36 + 1/6 + 1/24) = 17/36,
    # kappa_w = 1 - (1/3) / (17/36) = 5/17.
    # Ordinal alpha (Krippendorff 2011): coincidences o = T + T' = [[2, 0, 2], [0, 2, 0], [2, 0, 4]],
    # value totals (4, 2, 6), n = 12; distances delta(loss, tie) = (4 + 2 - 3)^2 = 9,
    # delta(tie, win) = (2 + 6 - 4)^2 = 16, delta(loss, win) = (4 + 2 + 6 - 5)^2 = 49;
    # alpha = 1 - (n - 1) sum o delta / sum n_c n_k delta = 1 - 11 (2 * 2 * 49) / (2 (8*9 + 12*16 + 24*49))
    #       = 1 - 2156 / 2880 = 181/720.
    # The chrf judge agrees everywhere but finds q5 invalid: that pair drops, kappa and alpha are 1.
    chrf = [(q, s, v if q != "q5" else "invalid") for q, s, v in PERSON]
    runs = verdict_runs(
        {("small", "primary"): PRIMARY, ("small", "chrf"): chrf, ("large", "primary"): [], ("large", "chrf"): []}
    )
    table = human_agreement.human_agreement_table(labelled("small", PERSON), runs, n_boot=500, seed=0)
    assert list(table.columns) == human_agreement.COLUMNS
    rows = table.to_dict(orient="records")
    assert [(r["test_set"], r["judge_a"], r["judge_b"]) for r in rows] == [
        ("small", "human", "primary"),
        ("small", "human", "chrf"),
        ("large", "human", "primary"),
        ("large", "human", "chrf"),
    ]
    primary, chrf_row, large, _ = rows
    assert (primary["n_questions"], primary["n_pairs"]) == (5, 6)
    assert primary["agreement"] == pytest.approx(4 / 6)
    assert primary["weighted_kappa"] == pytest.approx(5 / 17)
    assert primary["alpha"] == pytest.approx(181 / 720)
    assert primary["weighted_kappa_low"] <= 5 / 17 <= primary["weighted_kappa_high"]
    assert (chrf_row["n_questions"], chrf_row["n_pairs"]) == (4, 5)
    assert chrf_row["agreement"] == chrf_row["weighted_kappa"] == pytest.approx(1.0)
    assert chrf_row["alpha"] == pytest.approx(1.0)
    # No labels on the large test set: rows of no pairs and no numbers.
    assert large["n_pairs"] == 0 and math.isnan(large["weighted_kappa"])


def test_a_label_without_the_judges_verdict_is_a_key_of_another_run():
    runs = verdict_runs({("small", "primary"): PRIMARY[:-1]})
    with pytest.raises(
        PipelineError,
        match=r"row 6 \(small, setting1 rep0, question q5\) has no verdict of judge "
        r"primary: the key is of another run",
    ):
        human_agreement.human_agreement_table(labelled("small", PERSON), runs)


def test_the_stage_needs_a_labels_file(tmp_path):
    smk = fake_snakemake(
        input={"labels": [], "key": "key.csv", "verdicts": []},
        output={"labels": str(tmp_path / "l.csv"), "csv": str(tmp_path / "t.csv")},
    )
    with pytest.raises(PipelineError, match="set human_labels in the config"):
        human_agreement.main(smk)


# --------------------------------------------------------------------------- the demo run


def test_the_demo_writes_the_sheet_and_with_labels_each_judges_agreement_in_the_paper(demo_run, tmp_path):
    """The demo's sheet, filled by this test as the primary judge would fill it on two rows of
    three and flipped (win and loss swapped, a tie made a win) on the third, one row left empty;
    configured as human_labels, it adds the agreement table and the paper's, and nothing else."""
    root = tmp_path / "run"
    shutil.copytree(demo_run, root, symlinks=True)
    labels_dir = root / "results" / "demo" / "human_labels"
    sheet, key = read_csv(labels_dir / "sheet" / "sheet.csv"), read_csv(labels_dir / "key.csv")
    assert len(sheet) == len(key) == 12 * len(TEST_SETS)
    assert (labels_dir / "sheet" / "sheet.html").stat().st_size > 0
    verdicts = {}
    for path in (root / "results" / "demo" / "verdicts").glob("*/*/*/rep*.jsonl"):
        test_set, judge, setting = path.parts[-4:-1]
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            verdicts[test_set, judge, setting, int(path.stem[3:]), str(r["id"])] = r["verdict"]
    flip = {"win": "loss", "loss": "win", "tie": "win", "invalid": "win"}
    intended = {}
    for k, (row, pair) in enumerate(zip(sheet, key)):
        assert row["row"] == pair["row"]
        if k == 0:
            continue  # left empty
        judged = verdicts[pair["test_set"], "primary", pair["setting"], int(pair["replicate"]), pair["id"]]
        person = flip[judged] if k % 3 == 0 else ("tie" if judged == "invalid" else judged)
        ours = "A" if pair["order"] == "setting_first" else "B"
        row["label"] = {"win": ours, "loss": "B" if ours == "A" else "A", "tie": "tie"}[person]
        intended[int(row["row"])] = (pair, person, k % 3 == 0)
    write_filled(root / "filled.csv", sheet)
    name = overlay(root, "labels.yaml", {"human_labels": "filled.csv"})
    assert planned_jobs(root, *DEMO, name) == {"human_agreement": 1, **PAPER_JOBS}
    snakemake(root, "--cores", "2", *DEMO, name)

    unblinded = read_csv(labels_dir / "labels.csv")
    assert [int(r["row"]) for r in unblinded] == sorted(intended)
    assert all(r["verdict"] == intended[int(r["row"])][1] for r in unblinded)
    valid = {
        k: v
        for k, v in intended.items()
        if verdicts[v[0]["test_set"], "primary", v[0]["setting"], int(v[0]["replicate"]), v[0]["id"]] != "invalid"
    }
    table = read_csv(root / "results" / "demo" / "tables" / "human_agreement.csv")
    assert [(r["test_set"], r["judge_a"], r["judge_b"]) for r in table] == [
        (t, "human", j) for t in TEST_SETS for j in JUDGES
    ]
    for r in table:
        pairs = [(pair, person) for pair, person, _ in intended.values() if pair["test_set"] == r["test_set"]]
        judged = [
            (person, verdicts[r["test_set"], r["judge_b"], p["setting"], int(p["replicate"]), p["id"]])
            for p, person in pairs
        ]
        judged = [(a, b) for a, b in judged if b != "invalid"]
        assert int(r["n_pairs"]) == len(judged)
        assert float(r["agreement"]) == pytest.approx(sum(a == b for a, b in judged) / len(judged))
        counts = [[sum((a, b) == (x, y) for a, b in judged) for y in ORDER] for x in ORDER]
        expected_kappa = float(weighted_kappa(counts))
        assert (
            float(r["weighted_kappa"]) == pytest.approx(expected_kappa)
            if not math.isnan(expected_kappa)
            else r["weighted_kappa"] == ""
        )
        if r["judge_b"] == "primary":  # it disagrees with the person exactly on the flipped rows
            flipped = sum(f for p, _, f in valid.values() if p["test_set"] == r["test_set"])
            assert round((1 - float(r["agreement"])) * len(judged)) == flipped > 0
    tex = (root / "results" / "demo" / "paper" / "paper.tex").read_text(encoding="utf-8")
    human = tex[tex.index(r"\label{tab:human}") :]
    human = human[: human.index(r"\end{tabular}")]
    for r in table:
        assert (
            rf"\texttt{{{r['test_set']}}} & \texttt{{{r['judge_b']}}} & {r['n_questions']} & {r['n_pairs']} & "
            f"{100 * float(r['agreement']):.1f} & " in human
        )
    assert (
        "Agreement with people"
        in subprocess.run(
            ["pdftotext", str(root / "results/demo/paper/paper.pdf"), "-"], capture_output=True, text=True, check=True
        ).stdout
    )
