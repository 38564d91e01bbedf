"""The code's licence and citation: LICENSE is the Apache License 2.0, CITATION.cff has what
Citation File Format 1.2.0 requires (checked by hand: cffconvert, its validator, pins a jsonschema
older than the pipeline's) and names the same licence, and the README names both."""

import re

import yaml

from conftest import REPO

# Citation File Format 1.2.0: the reference types its schema allows that this file uses.
REFERENCE_TYPES = {"article", "data", "software"}


def test_license_is_the_apache_license_2_0():
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License\n                           Version 2.0, January 2004")
    for part in (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "3. Grant of Patent License.",
        "END OF TERMS AND CONDITIONS",
        "http://www.apache.org/licenses/LICENSE-2.0",
    ):
        assert part in text
    # The nine sections of the terms, in order.
    sections = re.findall(r"^\s+(\d)\. [A-Z]", text.split("TERMS AND CONDITIONS", 1)[1], re.M)
    assert sections == [str(k) for k in range(1, 10)]


def test_citation_has_what_cff_1_2_0_requires_and_the_code_licence():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0"
    assert cff["message"].strip() and cff["title"].strip()
    assert cff["type"] == "software" and cff["license"] == "Apache-2.0"

    def is_author(a):
        return isinstance(a, dict) and bool(a.get("name") or a.get("family-names"))

    assert cff["authors"] and all(is_author(a) for a in cff["authors"])
    for ref in cff["references"]:
        assert ref["type"] in REFERENCE_TYPES and ref["title"].strip()
        assert ref["authors"] and all(is_author(a) for a in ref["authors"])
        assert ref["url"].startswith("https://")
    titles = {r["title"] for r in cff["references"]}
    assert {"Huatuo26M-Lite", "Qwen3-4B", "Qwen3-14B"} <= titles


def test_readme_names_the_licence_the_citation_and_what_the_inputs_carry():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Licences and citation", 1)[1].split("\n## ", 1)[0]
    assert "Apache License 2.0 (`LICENSE`)" in section and "`CITATION.cff`" in section
    for source in (
        "FreedomIntelligence/Huatuo26M-Lite",
        "Qwen/Qwen3-4B",
        "Qwen/Qwen3-14B",
        "dashscope/resources/qwen.tiktoken",
    ):
        assert source in section
