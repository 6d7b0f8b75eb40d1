"""Result tables from recorded runs alone: results/table.md (mean ± std over seeds) and results/runs.csv (every run).

    python -m mdrun.report [RUNS_DIR] [RESULTS_DIR]
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mdrun.pipeline.record import SUMMARY_FILE, read_summary
from mdrun.storage import atomic_write_text

log = logging.getLogger(__name__)

SETTING = ["data", "model", "forget_images", "gallery_size"]
# Table columns: (metric key in the run summary, column header).
COLUMNS = [
    ("test/r_mean", "D_test r_mean"),
    ("test/txt_r1", "D_test TR@1"),
    ("test/img_r1", "D_test IR@1"),
    ("forget/r_mean", "D_f r_mean"),
    ("retain/r_mean", "D_r r_mean"),
    ("deletion_auc/similarity", "deletion AUC (similarity)"),
    ("deletion_auc/matching", "deletion AUC (matching)"),
    ("mia/logistic_forget_member_share", "MIA D_f member share"),
    ("gap/mean", "gap to Retrain (mean)"),
    ("unimodal/image_agreement", "image agreement"),
    ("unimodal/text_agreement", "text agreement"),
    ("seconds", "time (s)"),
]
ROLE_ORDER = {"original": 0, "retrain": 1}
HEADLINE_METRIC = "deletion_auc/similarity"
# Rows that are not baselines in the headline comparison.
NOT_BASELINES = {"original", "retrain", "multidelete", "retrain (method)"}


@dataclass
class TablePaths:
    markdown: Path
    csv: Path
    runs: int


def run_rows(summary: dict) -> list[dict]:
    """Build one row per evaluated model of a run: the original, Retrain and the unlearned model (named by its method)."""
    run = summary["run"]
    rows = []
    for role, metrics in summary.get("models", {}).items():
        stage = {"original": "original", "retrain": "retrain", "unlearned": "unlearn"}[role]
        name = run["method"] if role == "unlearned" else role
        if role == "unlearned" and name in ROLE_ORDER:
            # A run of the `retrain` method must not merge with the pipeline's own Retrain row.
            name = f"{name} (method)"
        if role == "unlearned" and run.get("tag"):
            name = f"{name} ({run['tag']})"
        cost = summary.get("cost", {}).get(stage, {})
        rows.append({**{key: run.get(key) for key in SETTING}, "seed": run["seed"], "method": name,
                     **metrics, "seconds": cost.get("seconds"), "peak_rss_mb": cost.get("peak_rss_mb")})
    return rows


def collect_runs(runs_dir: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(Path(runs_dir).glob(f"**/{SUMMARY_FILE}")):
        if any(part.startswith(".") for part in path.relative_to(runs_dir).parts):
            continue  # archived earlier runs under .previous/
        summary = read_summary(path)
        if summary and summary.get("models"):
            rows += [{**row, "run_dir": str(path.parent)} for row in run_rows(summary)]
    return pd.DataFrame(rows)


def format_cell(values: pd.Series) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.1f}"
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}"


def markdown_table(runs: pd.DataFrame) -> str:
    """Per setting, one line per method with mean ± std over seeds; original and Retrain are deduplicated per seed."""
    lines = []
    for setting, group in runs.groupby(SETTING, sort=True):
        data, model, forget_images, gallery = setting
        lines.append(f"### {data} / {model}: {forget_images} deleted images, galleries of {gallery} images\n")
        lines.append("| method | seeds | " + " | ".join(header for _, header in COLUMNS) + " |")
        lines.append("|---|---|" + "---|" * len(COLUMNS))
        deduplicated = group.drop_duplicates(subset=["method", "seed"], keep="last")
        order = sorted(deduplicated["method"].unique(), key=lambda name: (ROLE_ORDER.get(name, 2), name))
        for method in order:
            rows = deduplicated[deduplicated["method"] == method]
            cells = [format_cell(rows[key]) if key in rows else "–" for key, _ in COLUMNS]
            lines.append(f"| {method} | {len(rows)} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append(headline_line(deduplicated))
        lines.append("")
    return "\n".join(lines)


def headline_line(runs: pd.DataFrame, metric: str = HEADLINE_METRIC) -> str:
    """Compare MultiDelete's deletion AUC with the best baseline's, Retrain and the original excluded, as Cheng and Amiri (ECCV 2024) do."""
    means = runs.groupby("method")[metric].mean().dropna() if metric in runs else pd.Series(dtype=float)
    baselines = means.drop([name for name in means.index if name in NOT_BASELINES], errors="ignore")
    if "multidelete" not in means or baselines.empty:
        return "Headline: needs runs of multidelete and at least one baseline in this setting."
    best = baselines.idxmax()
    return (
        f"Headline ({metric}): multidelete {means['multidelete']:.1f}, best baseline {best} {baselines[best]:.1f}, "
        f"improvement {means['multidelete'] - baselines[best]:+.1f} points; Retrain {means.get('retrain', float('nan')):.1f}."
    )


def write_tables(runs_dir: Path, results_dir: Path) -> TablePaths:
    runs = collect_runs(runs_dir)
    results_dir = Path(results_dir)
    markdown, csv = results_dir / "table.md", results_dir / "runs.csv"
    if runs.empty:
        log.warning("no finished runs under %s; tables not written", runs_dir)
        return TablePaths(markdown, csv, 0)

    header = (
        "# Results\n\nWritten by `python -m mdrun.report` from the run summaries; rates and AUCs x100.\n"
        "Recall on D_test, D_f and D_r is measured within galleries of the stated size.\n\n"
    )
    atomic_write_text(header + markdown_table(runs), markdown)
    atomic_write_text(runs.to_csv(index=False), csv)
    return TablePaths(markdown, csv, runs["run_dir"].nunique())


def main() -> None:
    parser = argparse.ArgumentParser(description="Rebuild the result tables from recorded runs.")
    root = Path(os.environ.get("MDRUN_ROOT", "."))
    parser.add_argument("runs_dir", nargs="?", default=root / "outputs" / "runs", help="folder searched for run summaries (default: $MDRUN_ROOT/outputs/runs)")
    parser.add_argument("results_dir", nargs="?", default=root / "results", help="folder the tables are written to (default: $MDRUN_ROOT/results)")
    args = parser.parse_args()
    paths = write_tables(Path(args.runs_dir), Path(args.results_dir))
    if paths.runs == 0:
        raise SystemExit(f"no finished runs under {args.runs_dir}; nothing written")
    print(f"{paths.runs} runs -> {paths.markdown}, {paths.csv}")


if __name__ == "__main__":
    main()
