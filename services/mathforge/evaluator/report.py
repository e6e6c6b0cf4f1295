"""Writes a benchmark run's report.json and report.md atomically (temp file, fsync, rename)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(path: Path, text: str) -> None:
    """Writes `text` to `path` so a reader sees the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_markdown(report: dict[str, Any]) -> str:
    """A short human report: settings, the headline metrics, breakdowns and the first misses."""
    metrics: dict[str, float] = report["metrics"]
    lines = [f"# {report.get('benchmark', 'benchmark')} evaluation", ""]
    model, code = report.get("model") or {}, report.get("code") or {}
    if model:
        lines.append(f"- model: {model.get('path') or model.get('served_model', '?')}")
        if "weights_digest" in model:
            lines.append(f"- weights: {model['weights_digest']}")
        if "weights_version" in model:
            lines.append(f"- weights version served: {model['weights_version']}")
    if code:
        commit = code.get("git_commit")
        dirty = " (uncommitted changes)" if code.get("git_dirty") else ""
        lines.append(
            f"- code: mathforge {code.get('mathforge')}" + (f", commit {commit}{dirty}" if commit else "")
        )
    lines += [f"- {key}: {value}" for key, value in report.get("settings", {}).items()]
    lines += ["", "| metric | value |", "| --- | --- |"]
    lines += [f"| {key} | {value:.4f} |" for key, value in metrics.items() if "/" not in key]
    breakdown = {k: v for k, v in metrics.items() if "/" in k}
    if breakdown:
        lines += ["", "| breakdown | acc |", "| --- | --- |"]
        lines += [f"| {key.removeprefix('acc/')} | {value:.4f} |" for key, value in breakdown.items()]
    misses = [it for it in report.get("items", []) if it["correct"] and not it["correct"][0]][:10]
    if misses:
        lines += ["", "## First greedy misses", "", "| id | gold | answer |", "| --- | --- | --- |"]
        lines += [f"| {it['id']} | `{it['gold']}` | `{it['answers'][0]}` |" for it in misses]
    return "\n".join(lines) + "\n"


def write_report(out_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Writes report.json (everything) and report.md (the summary) under `out_dir`."""
    out = Path(out_dir)
    json_path, md_path = out / "report.json", out / "report.md"
    write_atomic(json_path, json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    write_atomic(md_path, render_markdown(report))
    return json_path, md_path
