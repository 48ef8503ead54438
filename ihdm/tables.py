"""HTML tables of result files for the Snakemake report, which shows HTML pages but
offers CSV and YAML files only as downloads: CSV tables (optionally thinned to a number of
evenly spaced rows, the last one kept) and YAML configs as dotted key / value rows."""

from __future__ import annotations

import csv
import html
import json
from pathlib import Path

import yaml

from .errors import UserError
from .io import atomic_write_text

STYLE = ("body{font-family:sans-serif;font-size:14px;margin:1em}"
         "table{border-collapse:collapse;margin-bottom:1.5em}"
         "th,td{border:1px solid #ccc;padding:2px 8px;text-align:right}"
         "th{background:#eee}td:first-child{text-align:left}")


class TableError(UserError):
    """A file that cannot be shown as a table."""


def _thin(rows: list, n: int | None) -> list:
    """At most ``n`` evenly spaced rows, the first and the last among them."""
    if n is None or len(rows) <= n:
        return rows
    if n <= 1:
        return rows[-1:]
    picks = sorted({round(i * (len(rows) - 1) / (n - 1)) for i in range(n)})
    return [rows[i] for i in picks]


def _flatten(node, prefix: str = "") -> list[tuple[str, str]]:
    """A nested mapping as (dotted key, JSON value) rows."""
    if isinstance(node, dict) and node:
        return [row for key, value in node.items()
                for row in _flatten(value, f"{prefix}.{key}" if prefix else str(key))]
    return [(prefix, json.dumps(node))]


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def file_table(path: str | Path, rows: int | None = None) -> str:
    """One file as an HTML table: a CSV with its header, a YAML mapping as key/value rows."""
    path = Path(path)
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise TableError(f"{path}: not YAML ({exc})") from None
        if not isinstance(data, dict):
            raise TableError(f"{path}: not a YAML mapping")
        return _table(["key", "value"], [list(r) for r in _flatten(data)])
    if path.suffix == ".csv":
        table = list(csv.reader(text.splitlines()))
        if not table:
            raise TableError(f"{path}: empty CSV file")
        return _table(table[0], _thin(table[1:], rows))
    raise TableError(f"{path}: a table needs a .csv or .yaml file")


def write_page(out: str | Path, title: str, files: list[str | Path], rows: int | None = None,
               names: list[str] | None = None) -> Path:
    """An HTML page with one table per file (headed by its name in ``names``, else its
    path)."""
    names = names or [str(f) for f in files]
    if len(names) != len(files):
        raise TableError(f"{len(names)} names for {len(files)} files")
    parts = [f"<h2>{html.escape(name)}</h2>{file_table(path, rows)}" for name, path in zip(names, files)]
    if not parts:
        parts = ["<p>No files.</p>"]
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(parts)}"
            "</body></html>")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, page)
    return out
