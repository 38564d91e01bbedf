"""The answer browser: built by the stage from tiny hand-made answer and verdict files, it shows every
question, answer and judge reply as text (escaped, never markup), flags flips, order and judge
disagreement as the verdicts say, and, in a real headless Chromium, loads without console errors
and its filters and search change which answers are shown."""

import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest

import answer_browser
from conftest import fake_snakemake
from huatuo_study.common import DataError

SETTINGS = ["s1", "control"]
REPLICATES = 2
JUDGES = {"primary": "reference: rouge-l-char", "chrf": "reference: chrf"}
TITLES = {"s1": "Baseline recipe", "control": "Untuned control"}
TEST_SETS = {
    "small": [
        {"id": 1, "question": "孩子发烧三天怎么办？", "reference": "多喝水，及时就医。"},
        {"id": 2, "question": "胃反酸怎么缓解？", "reference": "少食多餐。"},
        {"id": "q3", "question": "湿疹很痒 <b>怎么办</b>？", "reference": None},
    ],
    "large": [
        {"id": 10, "question": "头晕乏力是什么原因？", "reference": "可能是贫血。"},
        {"id": 11, "question": "失眠怎么调理？", "reference": "规律作息。"},
    ],
}
# An answer that tries to end the page's script and run its own, and a reply with markup.
INJECTION = "</script><script>window.injected = true;</script>"
MARKUP_REPLY = '<img src=x onerror="window.injected = true"> Assistant 1 is better than Assistant 2'
# (test set, judge, setting, replicate, question id) -> the setting's outcome in each order;
# every other answer wins both ways for s1 and loses both ways for the control.
OUTCOMES = {
    ("small", "primary", "control", 0, "1"): ("win", "loss"),  # a flip: verdict tie
    ("small", "primary", "control", 1, "1"): ("tie", "win"),  # orders disagree, no flip
    ("small", "primary", "control", 1, "2"): ("invalid", "loss"),  # invalid
    ("small", "chrf", "s1", 1, "2"): ("loss", "loss"),  # judges disagree (win / loss)
    ("small", "chrf", "control", 1, "2"): ("win", "win"),  # no disagreement: primary's is invalid
    ("large", "chrf", "control", 0, "11"): ("win", "win"),  # judges disagree (loss / win)
}
LABEL_TEXT = {
    "better": "Assistant 1 is better than Assistant 2",
    "worse": "Assistant 1 is worse than Assistant 2",
    "equal": "Assistant 1 is equal to Assistant 2",
}
LABEL = {
    "setting_first": {"win": "better", "loss": "worse", "tie": "equal", "invalid": None},
    "baseline_first": {"win": "worse", "loss": "better", "tie": "equal", "invalid": None},
}


def outcomes(test_set, judge, setting, rep, qid):
    default = ("win", "win") if setting == "s1" else ("loss", "loss")
    return OUTCOMES.get((test_set, judge, setting, rep, qid), default)


def answer_text(test_set, setting, rep, qid):
    if (test_set, setting, rep, qid) == ("small", "s1", 0, "2"):
        return f"答案 {INJECTION}"
    return f"{setting} 第{rep}次 回答 {test_set}-{qid}"


def verdict_record(test_set, judge, setting, rep, question):
    qid = str(question["id"])
    first, second = outcomes(test_set, judge, setting, rep, qid)
    orders = []
    for order, outcome in zip(("setting_first", "baseline_first"), (first, second)):
        label = LABEL[order][outcome]
        reply = f"{judge} {order} 评语 {test_set}-{setting}-{rep}-{qid}\n" + (
            LABEL_TEXT[label] if label else "no label"
        )
        calls = [{"reply": reply, "label": label, "prompt_tokens": 5, "completion_tokens": 7}]
        if label is None:  # asked once more
            calls.append({"reply": None, "label": None, "prompt_tokens": 5, "completion_tokens": 0})
        if (test_set, judge, setting, rep, qid, order) == ("small", "primary", "s1", 0, "1", "setting_first"):
            calls[0]["reply"] = MARKUP_REPLY
        orders.append({"order": order, "label": label, "outcome": outcome, "calls": calls})
    if "invalid" in (first, second):
        verdict, consistent = "invalid", None
    else:
        verdict, consistent = (first if first == second else "tie"), first == second
    return {
        "id": question["id"],
        "setting": setting,
        "question": question["question"],
        "setting_answer": answer_text(test_set, setting, rep, qid),
        "baseline_answer": f"基线回答 {qid}",
        "verdict": verdict,
        "consistent": consistent,
        "orders": orders,
        "judge": {"backend": "reference", "model": judge},
        "usage": {"prompt_tokens": 10, "completion_tokens": 14, "calls": 2},
    }


def write_jsonl(path: Path, rows) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def write_run(folder: Path) -> dict:
    """A run's answer and verdict files in the rule's input order; the stage's inputs and params."""
    inputs = {"test": [], "baseline": [], "answers": [], "verdicts": []}
    for name, test in TEST_SETS.items():
        inputs["test"].append(write_jsonl(folder / f"test-{name}.jsonl", test))
        inputs["baseline"].append(
            write_jsonl(
                folder / f"baseline-{name}.jsonl",
                [
                    {"id": t["id"], "question": t["question"], "answer": f"基线回答 {t['id']}", "source": "model"}
                    for t in test
                ],
            )
        )
        for s in SETTINGS:
            for r in range(REPLICATES):
                inputs["answers"].append(
                    write_jsonl(
                        folder / f"gen-{name}-{s}-{r}.jsonl",
                        [
                            {
                                "id": t["id"],
                                "question": t["question"],
                                "answer": answer_text(name, s, r, str(t["id"])),
                                "hit_token_limit": (s, r) == ("control", 1),
                            }
                            for t in test
                        ],
                    )
                )
        for j in JUDGES:
            for s in SETTINGS:
                for r in range(REPLICATES):
                    inputs["verdicts"].append(
                        write_jsonl(
                            folder / f"v-{name}-{j}-{s}-{r}.jsonl", [verdict_record(name, j, s, r, t) for t in test]
                        )
                    )
    inputs["template"] = str(answer_browser.TEMPLATE)
    params = {
        "run": "tiny",
        "test_sets": list(TEST_SETS),
        "settings": SETTINGS,
        "replicates": REPLICATES,
        "controls": ["control"],
        "titles": TITLES,
        "judges": JUDGES,
    }
    return {"input": inputs, "params": params}


def build(folder: Path, spec: dict | None = None) -> Path:
    spec = spec or write_run(folder)
    out = folder / "browser.html"
    answer_browser.main(fake_snakemake(input=spec["input"], output={"html": str(out)}, params=spec["params"]))
    return out


@pytest.fixture
def page(tmp_path) -> Path:
    return build(tmp_path)


class Text(HTMLParser):
    """The page as a browser shows it: text outside script and style, and the script elements."""

    def __init__(self):
        super().__init__()
        self.text, self.scripts, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._in = tag
            if tag == "script":
                self.scripts.append({"attrs": dict(attrs), "body": ""})

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "script":
            self.scripts[-1]["body"] += data
        elif self._in is None:
            self.text.append(data)


def parsed(path: Path) -> Text:
    parser = Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def expected_rows():
    """One filter entry per answer row, computed from the records here (not by the stage)."""
    rows = []
    for name, test in TEST_SETS.items():
        for t in test:
            for s in SETTINGS:
                for r in range(REPLICATES):
                    verdicts = {j: verdict_record(name, j, s, r, t) for j in JUDGES}
                    rows.append(
                        {
                            "test_set": name,
                            "setting": s,
                            "replicate": r,
                            "id": str(t["id"]),
                            "verdict": {j: v["verdict"] for j, v in verdicts.items()},
                            "flip": {
                                j: sorted(o["outcome"] for o in v["orders"]) == ["loss", "win"]
                                for j, v in verdicts.items()
                            },
                            "orders_disagree": {j: v["consistent"] is False for j, v in verdicts.items()},
                            "judges_disagree": len({v["verdict"] for v in verdicts.values()} - {"invalid"}) > 1,
                        }
                    )
    return rows


# --------------------------------------------------------------------------- content


def test_every_question_answer_and_reply_is_shown_as_text(page):
    text = "".join(parsed(page).text)
    for name, test in TEST_SETS.items():
        assert f"Test set {name} ({len(test)} questions)" in text
        for t in test:
            assert t["question"] in text
            assert f"基线回答 {t['id']}" in text
            if t["reference"]:
                assert t["reference"] in text
            for s in SETTINGS:
                for r in range(REPLICATES):
                    assert answer_text(name, s, r, str(t["id"])) in text
                    for j in JUDGES:
                        for order in ("setting_first", "baseline_first"):
                            reply = f"{j} {order} 评语 {name}-{s}-{r}-{t['id']}"
                            assert reply in text or (name, j, s, r, t["id"], order) == (
                                "small",
                                "primary",
                                "s1",
                                0,
                                1,
                                "setting_first",
                            )
    assert MARKUP_REPLY in text
    assert "Untuned control · replicate 1" in text and "control" in text
    assert text.count("cut at the token limit") == sum(len(t) for t in TEST_SETS.values())  # control rep 1
    assert "(no reply)" in text  # the retry that got no reply
    assert "Judges: primary (reference: rouge-l-char), chrf (reference: chrf)." in text


def test_answers_and_replies_are_escaped_never_markup(page):
    source = page.read_text(encoding="utf-8")
    p = parsed(page)
    # Only the page's own two scripts: the filter index (JSON) and the filter code.
    assert [s["attrs"].get("type") for s in p.scripts] == ["application/json", None]
    assert "window.injected" not in "".join(s["body"] for s in p.scripts)
    assert html.escape(INJECTION, quote=False) in source
    assert "<img" not in source and "<b>怎么办</b>" not in source
    assert "湿疹很痒 &lt;b&gt;怎么办&lt;/b&gt;？" in source


def test_filter_index_flags_flips_and_disagreements(page):
    index = json.loads(parsed(page).scripts[0]["body"])
    expected = expected_rows()
    assert index == [{k: v for k, v in row.items() if k != "id"} for row in expected]
    flagged = {(e["test_set"], e["setting"], e["replicate"], e["id"]) for e in expected if e["flip"]["primary"]}
    assert flagged == {("small", "control", 0, "1")}
    assert {(e["setting"], e["replicate"], e["id"]) for e in expected if e["orders_disagree"]["primary"]} == {
        ("control", 0, "1"),
        ("control", 1, "1"),
    }
    assert {(e["test_set"], e["setting"], e["replicate"], e["id"]) for e in expected if e["judges_disagree"]} == {
        ("small", "control", 0, "1"),
        ("small", "control", 1, "1"),  # tie (primary) against loss (chrf)
        ("small", "s1", 1, "2"),
        ("large", "control", 0, "11"),
    }
    # Each row element exists once, in index order.
    source = page.read_text(encoding="utf-8")
    assert re.findall(r'id="row-(\d+)"', source) == [str(i) for i in range(len(index))]


def test_flags():
    win_loss = {
        "verdict": "tie",
        "orders": [{"order": "setting_first", "outcome": "win"}, {"order": "baseline_first", "outcome": "loss"}],
        "consistent": False,
    }
    win_tie = {
        "verdict": "tie",
        "orders": [{"order": "setting_first", "outcome": "win"}, {"order": "baseline_first", "outcome": "tie"}],
        "consistent": False,
    }
    invalid = {
        "orders": [{"order": "setting_first", "outcome": "invalid"}, {"order": "baseline_first", "outcome": "loss"}],
        "consistent": None,
    }
    assert answer_browser.judgement("primary", win_loss)["flip"] is True
    assert answer_browser.judgement("primary", win_tie)["flip"] is False
    assert answer_browser.orders_disagree(win_tie) and not answer_browser.orders_disagree(invalid)
    assert answer_browser.judges_disagree(["win", "loss"]) and answer_browser.judges_disagree(["tie", "win", "tie"])
    assert not answer_browser.judges_disagree(["win", "invalid"]) and not answer_browser.judges_disagree(["loss"])


def test_index_cannot_close_its_script_element():
    """A name in the index with `</script>` stays inside the JSON element, and reads back."""
    view = {
        "name": "a</script><script>alert(1)</script>",
        "questions": [
            {
                "id": "1",
                "question": "q",
                "reference": None,
                "baseline": "b",
                "runs": [
                    {
                        "setting": "s",
                        "replicate": 0,
                        "answer": "a",
                        "hit_token_limit": False,
                        "judges_disagree": False,
                        "judgements": [],
                    }
                ],
            }
        ],
    }
    source = answer_browser.render(answer_browser.page_context("r", [view], {}, {"s": "S"}, []))
    body = re.search(r'<script type="application/json" id="browser-data">(.*?)</script>', source, re.S)[1]
    assert json.loads(body)[0]["test_set"] == view["name"]
    assert "<script>alert" not in source


# --------------------------------------------------------------------------- bad input


def test_a_missing_answer_names_the_file(tmp_path):
    spec = write_run(tmp_path)
    path = Path(spec["input"]["answers"][1])
    path.write_text("".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[:-1]), encoding="utf-8")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: field 'id': no record of question 'q3'"):
        build(tmp_path, spec)


def test_a_stray_verdict_names_the_file(tmp_path):
    spec = write_run(tmp_path)
    path = Path(spec["input"]["verdicts"][0])
    stray = verdict_record("small", "primary", "s1", 0, {"id": 99, "question": "别的问题？"})
    path.write_text(path.read_text(encoding="utf-8") + json.dumps(stray, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}: field 'id': question '99' is not in the test set"):
        build(tmp_path, spec)


def test_a_verdict_of_another_setting_names_file_and_line(tmp_path):
    spec = write_run(tmp_path)
    path = Path(spec["input"]["verdicts"][2])  # small, primary, control rep0
    path.write_text(
        path.read_text(encoding="utf-8").replace('"setting": "control"', '"setting": "s1"', 1), encoding="utf-8"
    )
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}, line 1: field 'setting'"):
        build(tmp_path, spec)


# --------------------------------------------------------------------------- in a real browser


def chromium_driver():
    """Headless Chromium through Debian's chromium-driver; None where either is not installed."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


@pytest.fixture
def browser():
    pytest.importorskip("selenium")
    driver = chromium_driver()
    if driver is None:
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")
    yield driver
    driver.quit()


def visible_rows(driver) -> list[int]:
    from selenium.webdriver.common.by import By

    return [
        int(el.get_attribute("id")[4:]) for el in driver.find_elements(By.CSS_SELECTOR, ".run") if el.is_displayed()
    ]


def choose(driver, select_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select_id)).select_by_value(value)


def test_filters_and_search_in_headless_chromium(page, browser, tmp_path, record_property):
    from selenium.webdriver.common.by import By

    rows = expected_rows()
    everything = list(range(len(rows)))
    browser.get(page.resolve().as_uri())
    assert browser.find_element(By.ID, "count").text == f"{len(rows)} of {len(rows)} answers shown"
    assert visible_rows(browser) == everything
    assert browser.execute_script("return window.injected === undefined")

    choose(browser, "f-setting", "control")
    assert visible_rows(browser) == [i for i, e in enumerate(rows) if e["setting"] == "control"]
    choose(browser, "f-verdict", "tie")  # the primary judge's, by default
    assert visible_rows(browser) == [
        i for i, e in enumerate(rows) if e["setting"] == "control" and e["verdict"]["primary"] == "tie"
    ]
    choose(browser, "f-orders", "flip")
    flips = [i for i, e in enumerate(rows) if e["flip"]["primary"]]
    assert visible_rows(browser) == flips and len(flips) == 1
    browser.find_element(By.ID, "f-reset").click()
    assert visible_rows(browser) == everything

    choose(browser, "f-judge", "chrf")
    choose(browser, "f-verdict", "loss")
    assert visible_rows(browser) == [i for i, e in enumerate(rows) if e["verdict"]["chrf"] == "loss"]
    browser.find_element(By.ID, "f-reset").click()
    browser.find_element(By.ID, "f-judges-disagree").click()
    assert visible_rows(browser) == [i for i, e in enumerate(rows) if e["judges_disagree"]]
    browser.find_element(By.ID, "f-reset").click()
    choose(browser, "f-test-set", "large")
    assert visible_rows(browser) == [i for i, e in enumerate(rows) if e["test_set"] == "large"]
    browser.find_element(By.ID, "f-reset").click()

    # Search: a question's text shows all its answers; a reply's text shows the one it judges.
    browser.find_element(By.ID, "f-search").send_keys("胃反酸")
    assert visible_rows(browser) == [i for i, e in enumerate(rows) if e["test_set"] == "small" and e["id"] == "2"]
    browser.find_element(By.ID, "f-search").clear()
    browser.find_element(By.ID, "f-search").send_keys("chrf baseline_first 评语 large-control-1-10")
    assert visible_rows(browser) == [
        i
        for i, e in enumerate(rows)
        if (e["test_set"], e["setting"], e["replicate"], e["id"]) == ("large", "control", 1, "10")
    ]
    browser.find_element(By.ID, "f-search").send_keys(" nothing like this")
    assert visible_rows(browser) == []
    assert browser.find_element(By.ID, "count").text == f"0 of {len(rows)} answers shown"
    browser.find_element(By.ID, "f-reset").click()

    browser.find_element(By.CSS_SELECTOR, "#row-0 details summary").click()  # the judge replies
    assert MARKUP_REPLY in browser.find_element(By.ID, "row-0").text
    assert browser.execute_script("return window.injected === undefined")
    screenshot = tmp_path / "answer_browser.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    record_property("screenshot", str(screenshot))
    print(f"screenshot: {screenshot}")
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []
