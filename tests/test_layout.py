"""The house's layout: stage programs (a rule's `script:`) stand side by side over the library
modules of scripts/; none imports another stage."""

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
