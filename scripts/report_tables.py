"""Paper stage: Table 1, the answer lengths and the paired tests from the run's context.json as
small HTML pages, so that Snakemake's report shows them inline."""

from collections.abc import Mapping

import pandas as pd

from huatuo_study.common import log, read_json, run_stage, write_text
from huatuo_study.paper.provenance import check_no_secrets


def page(title: str, frame: pd.DataFrame) -> str:
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body>\n<h3>{title}</h3>\n{frame.to_html(index=False, escape=True, na_rep='--')}\n</body></html>\n"
    )


def report_tables(context: Mapping) -> dict[str, str]:
    """The three pages, keyed by the names of rule report_tables' outputs."""
    results = context["results"]
    n = f"{context['test']['n']} × {context['replicates']}"  # questions x replicates, never a pooled count
    table1 = pd.DataFrame(
        [
            {
                "setting": f"Ours (setting {r['k']}): {r['title']}",
                "questions × replicates": n,
                "wins": r["wins"],
                "ties": r["ties"],
                "losses": r["losses"],
                "invalid": r["invalid"],
                "win rate (%)": r["win_rate_pct"],
                "95% Wilson interval (%)": r["ci_text"],
                "sign test p": r["p_text"],
                "published (%)": r["published"],
            }
            for r in results
        ]
    )
    lengths = pd.DataFrame(
        [
            {
                "setting": f"Setting {r['k']}: {r['title']}",
                "mean answer chars": r["mean_chars_text"],
                "baseline mean answer chars": r["baseline_chars_text"],
            }
            for r in results
        ]
    )
    columns = ["setting a", "setting b", "questions × replicates", "a alone won", "b alone won", "exact p", "Holm p"]
    pairs = pd.DataFrame(
        [
            {
                "setting a": p["a_k"],
                "setting b": p["b_k"],
                "questions × replicates": n,
                "a alone won": p["a_better"],
                "b alone won": p["b_better"],
                "exact p": p["p_text"],
                "Holm p": p["p_holm_text"],
            }
            for p in context["pairs"]
        ],
        columns=columns,
    )
    return {
        "table": page("Table 1: win rate against the baseline", table1),
        "lengths_table": page("Answer length per setting and baseline", lengths),
        "pairwise_table": page("Paired tests between settings", pairs),
    }


def main(smk) -> None:
    tables = report_tables(read_json(smk.input.context))
    check_no_secrets(tables, smk.params.secret_envs)
    for name, html in tables.items():
        write_text(getattr(smk.output, name), html)
    log.info("report tables: wrote %s", ", ".join(getattr(smk.output, name) for name in tables))


if "snakemake" in globals():
    run_stage(main, snakemake)  # noqa: F821
