"""The sweep report's text: `report.md` (ranked table, seeds combined, training reward, warnings, plots,
failed jobs) and `report.csv` (one row per job in ranked order), rendered from the jobs and their ranking.

Every rate is shown with its Wilson 95% interval when validation logged it (`val/<rate>_lo` / `_hi`,
from `bbuqc.stage_b.metrics.wilson`); the ranking's constraint is a column; each job's end-of-run
warnings (`run_summary.json`) are listed.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from bbuqc.io.run_folder import SUMMARY
from bbuqc.sweep.jobs import HEALTH, Job, job_name, number, reward_id_columns, swept_parameters
from bbuqc.sweep.plots import TITLES
from bbuqc.sweep.ranking import SEED, Ranking, SeedGroup, held_out_metrics, seed_groups
from bbuqc.sweep.records import ERROR_TXT
from bbuqc.training.selection import INTERVAL_ENDS, VAL

REPORT_MD = "report.md"
REPORT_CSV = "report.csv"


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4g}"


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rows(jobs: list[Job], ranking: Ranking | None = None) -> list[dict[str, Any]]:
    """One dict per job, the columns of report.csv, in ranked order."""
    swept = swept_parameters(jobs)
    ids = reward_id_columns(jobs)
    held = held_out_metrics(jobs)
    out = []
    ordered = ranking.order if ranking else jobs
    ranked = {id(j): i + 1 for i, j in enumerate(ranking.ranked)} if ranking else {}
    for job in ordered:
        row: dict[str, Any] = {
            "rank": ranked.get(id(job)),
            "job": job_name(job),
            "dir": job.label,
            "status": job.status,
            "overrides": " ".join(job.overrides),
        }
        for key in swept:
            row[key] = job.params.get(key)
        row["pareto"] = (id(job) in ranking.pareto) if ranking and ranking.objectives else None
        row["best_step"] = job.best_step
        row["best_checkpoint"] = f"{job.label}/{job.best_checkpoint}" if job.best_checkpoint else None
        if ranking and ranking.constraint:
            row["meets_constraint"] = ranking.meets.get(id(job))
        for name in held:
            row[name] = job.held_out.get(name)
        for key in HEALTH:
            row[key] = job.health.get(key)
        row["steps"] = job.steps[-1] if job.steps else None
        row["final_reward"] = job.final_reward
        row["best_reward"] = job.best_reward
        for rid in ids:
            row[rid] = job.reward_ids.get(rid)
        row["metrics_source"] = job.metrics_source
        row["wandb_group"] = job.wandb.group if job.wandb else None
        row["error"] = job.error
        row["warnings"] = " | ".join(job.warnings) or None
        out.append(row)
    return out


def render_csv(jobs: list[Job], ranking: Ranking | None = None) -> str:
    table = rows(jobs, ranking)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(table[0]), lineterminator="\n")
    writer.writeheader()
    for row in table:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()


def _param_cell(value: str | None) -> str:
    """A swept value as a table shows it: a search's floats to 4 significant digits (the CSV keeps them whole)."""
    as_number = number(value)
    if as_number is None or value is None or "." not in str(value) and "e" not in str(value).lower():
        return "" if value is None else str(value)
    return f"{as_number:.4g}"


def _cells_row(cells: list[str]) -> str:
    return "| " + " | ".join(_md_cell(c) for c in cells) + " |"


def _interval_names(ranking: Ranking) -> set[str]:
    """`<rate>_lo` / `<rate>_hi` columns folded into their rate's cell (the CSV keeps them)."""
    return {n + end for n in ranking.available for end in INTERVAL_ENDS
            if all(n + e in ranking.available for e in INTERVAL_ENDS)}


def figure_cell(held_out: dict[str, Any], name: str) -> str:
    """A held-out figure, with its Wilson 95% interval when validation logged one (`<rate>_lo` / `_hi`)."""
    lo, hi = held_out.get(name + INTERVAL_ENDS[0]), held_out.get(name + INTERVAL_ENDS[1])
    text = _fmt(held_out.get(name))
    return f"{text} ({_fmt(lo)}–{_fmt(hi)})" if text and lo is not None and hi is not None else text


def _ranked_table(ranking: Ranking, jobs: list[Job]) -> list[str]:
    swept = swept_parameters(jobs)
    folded = _interval_names(ranking)
    shown = [ranking.metric, *[o for o in ranking.objectives if o != ranking.metric]]
    shown += [n for n in ranking.available if n not in shown and n != f"{VAL}n" and n not in folded]
    health = [h for h in HEALTH if any(h in j.health for j in jobs)]
    rule = ranking.constraint
    header = ["rank", "job", *swept, *(["Pareto"] if ranking.objectives else []), "best checkpoint",
              *([f"meets {rule}"] if rule else []), *[n.removeprefix(VAL) for n in shown], *health, "status"]
    text = ("job", "best checkpoint", "status", f"meets {rule}")
    lines = [_cells_row(header), "|" + "|".join("---" if h in text else "---:" for h in header) + "|"]
    position = {id(j): i + 1 for i, j in enumerate(ranking.ranked)}
    for job in ranking.order:
        ranked = id(job) in position
        cells = [
            str(position[id(job)]) if ranked else "",
            job_name(job),
            *[_param_cell(job.params.get(k)) for k in swept],
            *(["**front**" if id(job) in ranking.pareto else ""] if ranking.objectives else []),
            f"`{job.best_checkpoint}`" if job.best_checkpoint else (f"step {job.best_step}" if job.best_step else ""),
            *([("yes" if ranking.meets[id(job)] else "**no**") if ranked else ""] if rule else []),
            *[(f"**{figure_cell(job.held_out, n)}**" if n == ranking.metric and ranked else figure_cell(job.held_out, n))
              for n in shown],
            *[_fmt(job.health.get(h)) for h in health],
            f"**{job.status}**" if job.status != "completed" else job.status,
        ]
        lines.append(_cells_row(cells))
    return lines


def md_table(header: list[str], body: list[list[str]]) -> list[str]:
    """A Markdown table: the header, its rule, one line per row (cells on one line, pipes escaped)."""
    return [_cells_row(header), "|" + "|".join("---" for _ in header) + "|", *(_cells_row(r) for r in body)]


def _warnings_section(jobs: list[Job]) -> list[str]:
    """Each job's end-of-run warnings (run_summary.json: no learning signal, clipped answers, reward errors,
    an unmet train.select_constraint), with their cause and fix as the run logged them."""
    warned = [job for job in jobs if job.warnings]
    if not warned:
        return []
    lines = ["## Training warnings", "",
             f"{len(warned)} job{'s' if len(warned) != 1 else ''} ended with warnings (each run's `{SUMMARY}`):", ""]
    for job in warned:
        lines.append(f"- job {job_name(job)} (`{' '.join(job.overrides) or '(defaults)'}`):")
        lines += [f"  - {_md_cell(w)}" for w in job.warnings]
    lines.append("")
    return lines


def render_markdown(folder: Path, jobs: list[Job], plots: list[str], ranking: Ranking | None = None) -> str:
    swept = swept_parameters(jobs)
    ids = reward_id_columns(jobs)
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.status] = counts.get(job.status, 0) + 1
    lines = [f"# Sweep report: `{folder}`", ""]
    status_text = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines.append(f"{len(jobs)} job{'s' if len(jobs) != 1 else ''}: {status_text}.")
    if swept:
        shown = "; ".join(f"`{k}` = {', '.join('(unset)' if v is None else v for v in vals)}" for k, vals in swept.items())
        lines.append(f"Swept: {shown}.")
    groups = sorted({job.wandb.group for job in jobs if job.wandb and job.wandb.group})
    if groups:
        lines.append(f"W&B group: {', '.join(f'`{g}`' for g in groups)} (offline runs: `wandb sync <job>/wandb/offline-run-*`).")
    ranked = ranking is not None and ranking.metric is not None
    if ranked:
        best = ranking.order[0]
        direction = "higher" if ranking.greater else "lower"
        rule = ranking.constraint
        under = ""
        if rule is not None:
            under = (f" under `{rule}` (`train.select_constraint`, the rule that chose each checkpoint: the "
                     f"{len(ranking.meeting())} of {len(ranking.ranked)} jobs that meet it first, then the others, "
                     "closest to it first)")
        lines.append(f"Ranked by held-out `{ranking.metric}` ({direction} is better) at each job's best checkpoint "
                     f"(`train.select_by`){under}. Best: {figure_cell(best.held_out, ranking.metric)}, job "
                     f"{job_name(best)} (`{' '.join(best.overrides)}`), checkpoint "
                     f"`{best.label}/{best.best_checkpoint or ''}`.")
        if rule is not None and not ranking.meeting():
            lines.append(f"**Warning: no job meets `{rule}`**: the first is the closest to it "
                         f"({rule.metric} = {_fmt(best.held_out.get(rule.metric))}); more steps, other settings, "
                         "or a looser constraint.")
        if ranking.objectives:
            front = [job_name(j) for j in ranking.order if id(j) in ranking.pareto]
            lines.append(f"Pareto front of {' and '.join(f'`{o}`' for o in ranking.objectives)}: "
                         f"job{'s' if len(front) != 1 else ''} {', '.join(front) or '(none)'} "
                         "(no other job is at least as good on both and better on one).")
    lines.append("")
    if ranked:
        lines.append("## Ranked by the held-out objective")
        lines.append("")
        lines += _ranked_table(ranking, jobs)
        lines.append("")
        lines.append("Held-out figures are those of the validation at the best checkpoint's step (the checkpoint "
                     "folder is inside the job's folder, `report.csv` has the path). "
                     + ("A rate's parentheses hold its Wilson 95% interval (`<rate>_lo`–`<rate>_hi`): how much the "
                        "validation set's size pins it down. " if _interval_names(ranking) else "")
                     + ("GRPO health columns are means over the logged steps (`frac_reward_zero_std` near 1: "
                        "the groups' rewards all agree and GRPO has nothing to learn from; `clipped_ratio` near 1: "
                        "answers cut at `max_completion_length`)." if any(j.health for j in jobs) else ""))
        lines.append("")
        groups_ = seed_groups(jobs)
        if groups_ and any(len(g.jobs) > 1 for g in groups_):
            lines.append(f"## Seeds combined (`{SEED}`)")
            lines.append("")
            others = [k for k in swept if k != SEED]
            header = [*others, "jobs", "n", f"{ranking.metric.removeprefix(VAL)} mean ± std",
                      *[f"{o.removeprefix(VAL)} mean ± std" for o in ranking.objectives if o != ranking.metric]]
            lines.append(_cells_row(header))
            lines.append("|" + "|".join("---" for _ in header) + "|")
            metrics = [ranking.metric, *[o for o in ranking.objectives if o != ranking.metric]]
            sign = -1 if ranking.greater else 1

            def key(g: SeedGroup):
                st = g.stats(ranking.metric)
                return (0, sign * st[0]) if st else (1, 0.0)

            for group in sorted(groups_, key=key):
                cells = [str(group.params.get(k, "")) for k in others]
                cells += [", ".join(job_name(j) for j in group.jobs)]
                first = group.stats(ranking.metric)
                cells += [str(first[2]) if first else "0"]
                for m_ in metrics:
                    st = group.stats(m_)
                    cells.append(f"{st[0]:.4g} ± {st[1]:.2g}" if st else "")
                lines.append(_cells_row(cells))
            lines.append("")
            lines.append("Sample standard deviation over the seeds (0 for a single job).")
            lines.append("")
    lines.append("## Training reward" if ranked else "## Jobs")
    lines.append("")
    header = ["job", "overrides", "status", "steps", "final reward", "best reward", *ids, "error"]
    lines.append("| " + " | ".join(_md_cell(h) for h in header) + " |")
    lines.append("|" + "|".join("---" if h in ("job", "overrides", "status", "error") else "---:" for h in header) + "|")
    for job in jobs:
        cells = [
            job_name(job),
            " ".join(f"`{o}`" for o in job.overrides) or "(defaults)",
            f"**{job.status}**" if job.status != "completed" else job.status,
            str(job.steps[-1]) if job.steps else "",
            _fmt(job.final_reward),
            _fmt(job.best_reward),
            *[_fmt(job.reward_ids.get(rid)) for rid in ids],
            job.error or "",
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    if ids:
        lines.append("Reward-id columns are each reward's mean at the last logged step (before weighting); ")
        lines.append("final / best reward are the weighted sum the trainer optimises: its scale changes with the "
                     "reward weights, so rank a reward-weight sweep by the held-out objective, not by it.")
        lines.append("")
    scored = [job for job in jobs if job.final_reward is not None]
    if scored and not ranked:
        best = max(scored, key=lambda j: j.final_reward)
        lines.append(f"Best final reward: {_fmt(best.final_reward)}, job {job_name(best)} (`{' '.join(best.overrides)}`). "
                     "No job validated (train.eval_steps), so nothing is ranked by a held-out metric.")
        lines.append("")
    lines += _warnings_section(jobs)
    lines.append("## Plots")
    lines.append("")
    for name in plots:
        title = TITLES.get(name, name[:-4].replace("_", " "))
        lines.append(f"![{title}]({name})")
        lines.append("")
    failed = [job for job in jobs if job.status == "failed"]
    if failed:
        lines.append("## Failed jobs")
        lines.append("")
        for job in failed:
            lines.append(f"### job {job_name(job)}: `{' '.join(job.overrides)}`")
            lines.append("")
            detail = job.dir / ERROR_TXT
            text = detail.read_text(errors="replace").split("\n\n", 1)[0] if detail.is_file() else (job.error or "")
            lines += ["```text", text.strip(), "```", f"Full traceback: `{job.label}/{ERROR_TXT}`", ""]
    return "\n".join(lines).rstrip() + "\n"
