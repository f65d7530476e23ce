"""Stage-B outputs in the run folder: ``predictions.jsonl`` (streamed, resumable),
``metrics.json`` and ``report.md`` (written atomically at the end).

``predictions.jsonl``: one complete line per group, appended and flushed as soon as
the group is answered::

    {"source": "/abs/bbu_wind.jsonl", "line": 3, "group_id": "QC-…", "mission": "挡风板安装检查",
     "mission_id": "bbu_wind", "label": "不通过", "answers": ["不通过\\n理由: …"],
     "votes": {"通过": 0, "不通过": 1, "invalid": 0}, "verdict": "不通过", "reason": "…",
     "valid": true, "tie": false, "rewards": {"verdict.format": [1.0], …}}

A group's key is (source, group_id, label): a re-run skips keys already present.
``predictions.settings.json`` records what produced the answers, so a re-run with a
different model, adapter or sampling setting does not mix into the same file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from bbuqc.atomic import write_text_atomic
from bbuqc.errors import InputError

from .metrics import FALSE_PASS_LIMIT, HUMAN_LABELS, MODEL_VERDICTS, worst_examples

PREDICTIONS = "predictions.jsonl"
SETTINGS = "predictions.settings.json"
METRICS = "metrics.json"
REPORT = "report.md"
PREDICTION_FIELDS = ("source", "group_id", "mission", "label", "answers")


class PredictionsError(InputError):
    """An existing predictions file that cannot be resumed; the message is one line."""


def prediction_key(record: dict) -> tuple[str, str, str]:
    return (record["source"], record["group_id"], record["label"])


# --------------------------------------------------------------------------- predictions


def read_predictions(path: str | Path, repair: bool = False) -> list[dict]:
    """The records of ``path`` (none when it does not exist).

    A last line without its newline (a run killed mid-write) is dropped when it is
    not valid JSON, and completed when it is; with ``repair=True`` the file itself
    is fixed. Any other bad line raises ``PredictionsError("<path>:<line>: …")``.
    """
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    records, offset = [], 0
    lines = data.split(b"\n")
    complete_until = len(data)
    for lineno, raw in enumerate(lines, 1):
        last = lineno == len(lines)
        start, offset = offset, offset + len(raw) + 1
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            if last:  # no newline after it: the tail of an interrupted write
                complete_until = start
                break
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8"
            raise PredictionsError(f"{path}:{lineno}: invalid JSON: {msg}") from None
        if not isinstance(obj, dict) or any(key not in obj for key in PREDICTION_FIELDS):
            missing = [k for k in PREDICTION_FIELDS if not isinstance(obj, dict) or k not in obj]
            raise PredictionsError(f"{path}:{lineno}: not a prediction record (missing {', '.join(missing)})")
        if obj["label"] not in HUMAN_LABELS:
            raise PredictionsError(f"{path}:{lineno}: label: expected 通过 or 不通过, got {obj['label']!r}")
        answers = obj["answers"]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise PredictionsError(f"{path}:{lineno}: answers: expected a non-empty list of strings")
        records.append(obj)
    if repair and (complete_until < len(data) or (data and not data.endswith(b"\n"))):
        with path.open("r+b") as handle:
            handle.truncate(complete_until)
            if complete_until and not data[:complete_until].endswith(b"\n"):
                handle.seek(0, os.SEEK_END)
                handle.write(b"\n")
    return records


def prediction_line(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


class PredictionWriter:
    """Appends one complete, flushed line per group."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._handle = self.path.open("a", encoding="utf-8")

    def write(self, record: dict) -> None:
        self._handle.write(prediction_line(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def check_settings(out_dir: Path, settings: dict, has_predictions: bool) -> None:
    """Record ``settings`` beside the predictions, or refuse to resume predictions made differently."""
    path = out_dir / SETTINGS
    if has_predictions and path.is_file():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            before = None
        if isinstance(before, dict):
            changed = [k for k in settings if k in before and before[k] != settings[k]]
            if changed:
                shown = ", ".join(f"{k}={before[k]!r} (now {settings[k]!r})" for k in changed)
                raise PredictionsError(
                    f"{out_dir / PREDICTIONS} was made with {shown}; "
                    "use another evaluate.output_dir or the same settings to resume"
                )
            return
    write_text_atomic(path, json.dumps(settings, ensure_ascii=False, indent=2) + "\n")


# --------------------------------------------------------------------------- final files


def write_outputs(out_dir: Path, metrics: dict, records: Sequence[dict]) -> None:
    write_text_atomic(out_dir / REPORT, render_report(metrics, records))
    write_text_atomic(out_dir / METRICS, json.dumps(metrics, ensure_ascii=False, indent=2) + "\n")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def _frac(k: int, n: int, value: float | None) -> str:
    return f"{_pct(value)} ({k}/{n})"


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
    worst = worst_examples(records, limit=examples)
    out += ["", "## Worst examples", ""]
    if not worst:
        out.append("Every group's verdict matches its label.")
    else:
        out += [
            "False passes first, then false fails, then invalid verdicts on human-不通过 groups "
            f"(at most {examples}).",
            "",
            "| # | outcome | mission | group | human | model | votes | reason, else first answer (raw) |",
            "|" + " --- |" * 8,
        ]
        for i, (kind, rec, v) in enumerate(worst, 1):
            shown = v.reason if v.reason is not None else json.dumps(rec["answers"][0], ensure_ascii=False)
            out.append(
                f"| {i} | {kind} | {_cell(rec.get('mission'), 24)} | {_cell(rec['group_id'], 40)} | {rec['label']} | "
                f"{v.verdict} | {_votes(v.votes)} | {_cell(shown, 120)} |"
            )
    out += _invalid_section(records, examples)
    return "\n".join(out) + "\n"


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
