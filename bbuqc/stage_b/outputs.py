"""Stage-B outputs in the run folder: ``predictions.jsonl`` (streamed, resumable),
``metrics.json`` and ``report.md`` (written atomically at the end).

``predictions.jsonl``: one complete line per group, appended and flushed as soon as
the group is answered::

    {"source": "/abs/bbu_wind.jsonl", "line": 3, "group_id": "QC-…", "mission": "挡风板安装检查",
     "mission_id": "bbu_wind", "label": "不通过", "answers": ["不通过\\n理由: …"],
     "votes": {"通过": 0, "不通过": 1, "invalid": 0}, "verdict": "不通过", "reason": "…",
     "valid": true, "tie": false, "rules_verdict": "不通过", "error_source": null,
     "rewards": {"verdict.format": [1.0], …}, "summaries": {"图片_1": "{…}", "图片_2": "无关图片"}}

``summaries`` are the group's Stage-A summaries as the verdict model saw them; ``rules_verdict``
and ``error_source`` (error attribution, docs/evaluate.md) are recomputed from them by the
metrics, so a line written before they existed still counts (its summaries are then taken from
the run's inputs).

A group's key is (source, group_id, label): a re-run skips keys already present, and a
repeated key is refused (two evaluations cannot both write into one folder: the file is
locked while a run writes it). ``predictions.settings.json`` records what produced the
answers, so a re-run with a different model, adapter or sampling setting does not mix into
the same file; predictions whose settings file is missing are not resumed unless
``evaluate.force_resume=true``. The writer is bbuqc/io/jsonl.py, shared with Stage-A.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from bbuqc.io.atomic import write_text_atomic
from bbuqc.io.jsonl import JsonlError, RecordError, ResumableJsonl, Settings, read_jsonl

from .metrics import (
    BOTH,
    FALSE_PASS_LIMIT,
    HUMAN_LABELS,
    MISSING,
    MODEL_VERDICTS,
    STATED,
    attribution,
    wilson,
    worst_examples,
)

PREDICTIONS = "predictions.jsonl"
SETTINGS = "predictions.settings.json"
METRICS = "metrics.json"
REPORT = "report.md"
PREDICTION_FIELDS = ("source", "group_id", "mission", "label", "answers")

PredictionsError = JsonlError  # an existing predictions file that cannot be resumed; one line


def prediction_key(record: dict) -> tuple[str, str, str]:
    return (record["source"], record["group_id"], record["label"])


# --------------------------------------------------------------------------- predictions


def _parse(obj) -> dict:
    if not isinstance(obj, dict) or any(key not in obj for key in PREDICTION_FIELDS):
        missing = [k for k in PREDICTION_FIELDS if not isinstance(obj, dict) or k not in obj]
        raise RecordError(f"not a prediction record (missing {', '.join(missing)})")
    if obj["label"] not in HUMAN_LABELS:
        raise RecordError(f"label: expected 通过 or 不通过, got {obj['label']!r}")
    answers = obj["answers"]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise RecordError("answers: expected a non-empty list of strings")
    summaries = obj.get("summaries")
    if summaries is not None and (
        not isinstance(summaries, dict) or not all(isinstance(v, str) for v in summaries.values())
    ):
        raise RecordError("summaries: expected an object of {图片_i: summary text}")
    return obj


def _describe(record: dict) -> str:
    return f"group {record['group_id']} ({record['label']}, from {record['source']})"


def read_predictions(path: str | Path) -> list[dict]:
    """The records of ``path`` (none when it does not exist); an unfinished last line (a run killed
    mid-write) is ignored. A bad line, or a group on two lines, raises ``PredictionsError("<path>:<line>: …")``."""
    return read_jsonl(path, _parse, prediction_key, _describe)


def prediction_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


def open_predictions(out_dir: Path, settings: dict, *, force: bool = False) -> ResumableJsonl[dict]:
    """``predictions.jsonl`` to open for appending (a context manager): locked, its unfinished last line cut, its records
    read, ``settings`` checked against (then recorded in) ``predictions.settings.json``."""
    guard = Settings(settings, out_dir / SETTINGS, force=force, force_hint="evaluate.force_resume=true",
                     other_output_hint="use another evaluate.output_dir")
    return ResumableJsonl(out_dir / PREDICTIONS, _parse, prediction_key, _describe, settings=guard)


def append_prediction(file: ResumableJsonl[dict], record: dict) -> None:
    file.append(prediction_line(record), record)


# --------------------------------------------------------------------------- final files


def write_outputs(out_dir: Path, metrics: dict, records: Sequence[dict]) -> None:
    write_text_atomic(out_dir / REPORT, render_report(metrics, records))
    write_text_atomic(out_dir / METRICS, json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _frac(k: int, n: int, value: float | None) -> str:
    """A rate with its counts and its Wilson 95% interval: how much the counts pin it down."""
    ci = wilson(k, n)
    return f"{_pct(value)} ({k}/{n})" if ci is None else f"{_pct(value)} ({k}/{n}; 95% CI {_pct(ci[0])}–{_pct(ci[1])})"


def _ok(value: bool | None) -> str:
    return "—" if value is None else ("ok" if value else "**over the limit**")


def _cell(text: object, limit: int = 80) -> str:
    """One Markdown table cell: one line, pipes escaped, cut to ``limit`` characters."""
    text = "" if text is None else str(text)
    text = text.replace("\r", "").replace("\n", "⏎")
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def _votes(votes: dict) -> str:
    return " / ".join(f"{k} {votes.get(k, 0)}" for k in MODEL_VERDICTS)


def _reward_ids(metrics: dict) -> list[str]:
    return list(metrics["overall"]["rewards"])


def render_report(metrics: dict, records: Sequence[dict], examples: int = 20) -> str:
    o = metrics["overall"]
    s = metrics.get("settings", {})
    limit = metrics.get("false_pass_limit", FALSE_PASS_LIMIT)
    rids = _reward_ids(metrics)
    out = ["# Stage-B evaluation", ""]
    if s:
        out += [
            f"- model: `{s.get('model')}`" + (f" (`{s['model_path']}`)" if s.get("model_path") else "")
            + f", adapter: `{s.get('adapter') or 'none'}`",
            f"- samples per group: {s.get('samples_per_group')}, temperature: {s.get('temperature')}, "
            f"max new tokens: {s.get('max_new_tokens')}, seed: {s.get('seed')}",
        ]
    for src in metrics.get("sources", []):
        out.append(f"- input: `{src}`")
    out += [
        f"- {o['n']} groups, {o['n_answers']} answers; per-group lines in `{PREDICTIONS}`, numbers in `{METRICS}`",
        "",
        "Business view: only a 通过 verdict passes a group; 不通过, an invalid answer and a tied vote all fail it.",
        "",
        "## Overall",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| accuracy (verdict = human label) | {_frac(o['correct'], o['n'], o['accuracy'])} |",
        f"| false pass rate P(model 通过 \\| human 不通过) | {_frac(o['false_pass'], o['human_fail'], o['false_pass_rate'])}"
        f" — limit < {_pct(limit)}: {_ok(o['false_pass_ok'])} |",
        f"| false fail rate P(model 不通过 or invalid \\| human 通过) | "
        f"{_frac(o['false_fail'], o['human_pass'], o['false_fail_rate'])} |",
        f"| invalid answers (break the two-line protocol) | "
        f"{_frac(o['invalid_answers'], o['n_answers'], o['invalid_rate'])} |",
        f"| invalid group verdicts | {_frac(o['invalid_groups'], o['n'], o['invalid_group_rate'])} |",
        f"| tied votes (counted as 不通过) | {o['ties']} |",
    ]
    out += [f"| mean `{rid}` | {o['rewards'][rid]:.3f} |" for rid in rids]
    out += ["", "## Per mission", ""]
    head = ["mission", "id", "groups", "accuracy", "false pass", f"< {_pct(limit)}", "false fail", "invalid answers"]
    out += ["| " + " | ".join(head + [f"`{r}`" for r in rids]) + " |", "|" + " --- |" * (len(head) + len(rids))]
    for mid, m in metrics["per_mission"].items():
        row = [
            _cell(m.get("mission")),
            mid,
            str(m["n"]),
            _frac(m["correct"], m["n"], m["accuracy"]),
            _frac(m["false_pass"], m["human_fail"], m["false_pass_rate"]),
            _ok(m["false_pass_ok"]),
            _frac(m["false_fail"], m["human_pass"], m["false_fail_rate"]),
            _frac(m["invalid_answers"], m["n_answers"], m["invalid_rate"]),
        ]
        row += [f"{m['rewards'][r]:.3f}" if r in m["rewards"] else "—" for r in rids]
        out.append("| " + " | ".join(row) + " |")
    out += ["", "## Confusion matrix", "", "Groups; rows: human label, columns: model verdict (majority vote).", ""]
    out += ["| human \\ model | " + " | ".join(MODEL_VERDICTS) + " | total |", "|" + " --- |" * 5]
    for h in HUMAN_LABELS:
        row = o["confusion"][h]
        out.append(f"| {h} | " + " | ".join(str(row[m]) for m in MODEL_VERDICTS) + f" | {sum(row.values())} |")
    out += _attribution_section(metrics)
    worst = worst_examples(records, limit=examples)
    out += ["", "## Worst examples", ""]
    if not worst:
        out.append("Every group's verdict matches its label.")
    else:
        out += [
            "False passes first, then false fails, then invalid verdicts on human-不通过 groups "
            f"(at most {examples}).",
            "",
            "| # | outcome | mission | group | human | model | rules | error source | votes "
            "| reason, else first answer (raw) |",
            "|" + " --- |" * 10,
        ]
        for i, (kind, rec, v) in enumerate(worst, 1):
            shown = v.reason if v.reason is not None else json.dumps(rec["answers"][0], ensure_ascii=False)
            rules, source = attribution(rec)
            out.append(
                f"| {i} | {kind} | {_cell(rec.get('mission'), 24)} | {_cell(rec['group_id'], 40)} | {rec['label']} | "
                f"{v.verdict} | {rules or '—'} | {source} | {_votes(v.votes)} | {_cell(shown, 120)} |"
            )
    out += _invalid_section(records, examples)
    return "\n".join(out) + "\n"


def rules_line(a: dict) -> str:
    """The reference line: the mission's rules' own figures on the groups they can judge."""
    r = a["rules"]
    if not r["judged"]:
        return f"Rules on these summaries: no group can be judged ({r['unjudgeable']} unjudgeable)."
    line = (
        f"Rules on these summaries: accuracy {_frac(r['correct'], r['judged'], r['accuracy'])}, "
        f"false-pass {_frac(r['false_pass'], r['human_fail'], r['false_pass_rate'])}, "
        f"false-fail {_frac(r['false_fail'], r['human_pass'], r['false_fail_rate'])}; "
        f"the model on the same {r['judged']} groups: {_frac(r['model_correct'], r['judged'], r['model_accuracy'])}"
    )
    if r["unjudgeable"]:
        line += f"; {r['unjudgeable']} group(s) the rules cannot judge are left out"
    return line + "."


def false_pass_kinds_line(a: dict) -> str:
    """The verdict model's false passes on the groups a human and the rules both fail, by what is wrong."""
    k = a["false_pass_by_kind"]
    parts = [f"{what} {_frac(k[kind]['false_pass'], k[kind]['groups'], k[kind]['false_pass_rate'])}"
             for kind, what in ((MISSING, "a required item no image shows"),
                                (STATED, "a failure a summary states"), (BOTH, "both"))]
    return "The model's false passes where the summaries show the failure, by what fails: " + "; ".join(parts) + "."


def _attribution_section(metrics: dict) -> list[str]:
    a = metrics["overall"]["attribution"]
    out = [
        "", "## Error attribution", "",
        "A wrong verdict (verdict ≠ human label, invalid included) comes from **Stage-A** when the mission's rules "
        "(`bbuqc/missions/rules.py`) applied to the group's summaries already give the wrong label, from the "
        "**verdict model** when they give the human label, and is **unknown** when the rules cannot judge the "
        "group (a summary that is neither 无关图片 nor a JSON object, a mission without rules).",
        "",
        rules_line(a),
        "",
        "| source | wrong verdicts | share |",
        "| --- | --- | --- |",
        f"| Stage-A (the summaries do not support the human label) | {a['stage_a']} | {_pct(a['stage_a_share'])} |",
        f"| verdict model (the summaries support it; the model missed it) | {a['verdict_model']} "
        f"| {_pct(a['verdict_model_share'])} |",
        f"| unknown (the rules cannot judge the group) | {a['unknown']} | {_pct(a['unknown_share'])} |",
        f"| total | {a['wrong']} | {_pct(1.0 if a['wrong'] else None)} |",
    ]
    if a["correct_against_rules"]:
        out += ["", f"{a['correct_against_rules']} correct verdict(s) on groups whose summaries the rules judge "
                    "wrongly (the model was right although the summaries do not support it)."]
    out += ["", false_pass_kinds_line(a)]
    out += [
        "", "| mission | wrong | Stage-A | verdict model | unknown | rules accuracy | rules false pass |",
        "|" + " --- |" * 7,
    ]
    for mid, m in metrics["per_mission"].items():
        ma, r = m["attribution"], m["attribution"]["rules"]
        out.append(
            f"| {mid} | {ma['wrong']} | {ma['stage_a']} | {ma['verdict_model']} | {ma['unknown']} "
            f"| {_frac(r['correct'], r['judged'], r['accuracy'])} "
            f"| {_frac(r['false_pass'], r['human_fail'], r['false_pass_rate'])} |"
        )
    return out


def _invalid_section(records: Sequence[dict], limit: int) -> list[str]:
    from bbuqc.prompts.verdict import parse_verdict

    invalid = [
        (rec, i, text)
        for rec in records
        for i, text in enumerate(rec["answers"], 1)
        if parse_verdict(text)[0] is None
    ]
    total = sum(len(rec["answers"]) for rec in records)
    out = ["", "## Invalid answers", ""]
    if not invalid:
        return out + ["Every answer follows the two-line protocol."]
    out += [
        f"{len(invalid)} of {total} answers break the two-line protocol (line 1 通过/不通过, line 2 理由: …); "
        f"the first {min(limit, len(invalid))} as raw text (JSON-escaped, cut at 400 characters):",
        "",
    ]
    for rec, i, text in invalid[:limit]:
        raw = json.dumps(text, ensure_ascii=False)
        if len(raw) > 400:
            raw = raw[:399] + "…"
        out += [
            f"- `{rec['group_id']}` ({rec.get('mission')}, human {rec['label']}), answer {i}/{len(rec['answers'])}:",
            "",
            "  ```text",
            "  " + raw,
            "  ```",
        ]
    return out
