"""config/README.md's key tables are the schema's: generated from config/schema.yaml's types,
defaults and descriptions (scripts/config_docs.py), so what a key does is written once."""

import pytest
import yaml

import config_docs
from conftest import REPO

SCHEMA = yaml.safe_load((REPO / "config" / "schema.yaml").read_text(encoding="utf-8"))
README = (REPO / "config" / "README.md").read_text(encoding="utf-8")


def test_the_committed_tables_are_the_generated_ones():
    assert config_docs.render(SCHEMA, README) == README, "config/README.md is stale: run `make config-docs`"


def test_every_key_of_every_section_is_in_a_table_with_a_description():
    paths = config_docs.START.findall(README)
    assert set(SCHEMA["properties"]) <= set(paths)
    rows = [line.split(" | ") for line in README.splitlines() if line.startswith("| `") and line.count(" | ") == 3]
    keys = {row[0].strip("| `") for row in rows}
    for key in (
        "splits.sizes.heldout",
        "test_sets.<name>.baseline.api_key_env",
        "augmentation.llm.cache_dir",
        "models.<name>.build.tokenizer",
        "settings.<name>.training.seed",
        "judge.batch",
        "judge_panel.<name>",
    ):
        assert key in keys
    assert [row[0] for row in rows if not row[3].strip(" |")] == []


def test_types_defaults_and_required_keys_read_from_the_schema():
    table = config_docs.table(SCHEMA, "splits", set(), set())
    assert "| `splits.val_fraction` | number, 0 ≤ x < 1 | — |" in table
    assert "| `splits.seed` | integer | required |" in table
    assert "| `splits.skip_bad_rows` | boolean | `false` |" in table
    assert "| `splits.filters.max_answer_chars` | integer ≥ 1 or null | `null` |" in table
    generation = config_docs.table(SCHEMA, "generation", set(), set())
    assert "| `generation.top_p` | number, 0 < x ≤ 1 | `1.0` |" in generation


def test_a_panel_judge_points_to_the_judge_table_instead_of_repeating_it():
    section = README[README.index("<!-- config table: judge_panel -->") :]
    section = section[: section.index(config_docs.END)]
    assert "`judge_panel.<name>`" in section and "`judge_panel.<name>.model`" not in section


def test_a_table_naming_a_key_the_schema_lacks_stops_naming_it():
    readme = "# x\n<!-- config table: splits.no_such_key -->\n<!-- end of config table -->\n"
    with pytest.raises(config_docs.ConfigDocsError, match="no key 'no_such_key'"):
        config_docs.render(SCHEMA, readme)


def test_an_unclosed_table_stops_naming_its_line():
    with pytest.raises(config_docs.ConfigDocsError, match="line 3: config table run has no"):
        config_docs.render(SCHEMA, "# x\n\n<!-- config table: run -->\n| stale |\n")


def test_check_fails_on_a_stale_readme_and_the_rewrite_mends_it(tmp_path, capsys):
    schema, readme = REPO / "config" / "schema.yaml", tmp_path / "README.md"
    readme.write_text(README.replace("| Name of the run;", "| Old words;"), encoding="utf-8")
    assert config_docs.main([str(schema), str(readme), "--check"]) == 1
    assert "make config-docs" in capsys.readouterr().err
    assert config_docs.main([str(schema), str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == README
    assert config_docs.main([str(schema), str(readme), "--check"]) == 0
