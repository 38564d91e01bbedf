"""The house's layout: stage programs (a rule's `script:`) stand side by side in scripts/ over the
library package scripts/huatuo_study/; no stage imports another, and the library imports none."""

import ast
import re

from conftest import REPO


def stage_programs() -> set[str]:
    return {
        m.group(1)
        for rules in (REPO / "rules").glob("*.smk")
        for m in re.finditer(r'"\.\./scripts/(\w+)\.py"', rules.read_text(encoding="utf-8"))
    }


def imported_modules(path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_no_stage_imports_another_stage():
    stages = stage_programs()
    assert {"train_adapter", "generate_answers", "winrate_table", "claims_table", "render_tex"} <= stages
    crossing = {s: sorted(imported_modules(REPO / "scripts" / f"{s}.py") & stages - {s}) for s in stages}
    assert {s: imports for s, imports in crossing.items() if imports} == {}


LIBRARY = REPO / "scripts" / "huatuo_study"
# Developer tools beside the stages that no rule runs.
TOOLS = {"config_docs"}


def test_scripts_holds_only_stages_and_the_library_holds_the_rest():
    top_level = {path.stem for path in (REPO / "scripts").glob("*.py")}
    assert top_level - TOOLS == stage_programs()
    concerns = {path.name for path in LIBRARY.iterdir() if (path / "__init__.py").is_file()}
    assert concerns == {"data", "model", "answering", "judging", "statistics", "paper"}


def test_the_library_imports_no_stage():
    stages = stage_programs()
    modules = sorted(LIBRARY.rglob("*.py"))
    assert len(modules) > 30
    crossing = {str(m.relative_to(LIBRARY)): sorted(imported_modules(m) & stages) for m in modules}
    assert {m: imports for m, imports in crossing.items() if imports} == {}
