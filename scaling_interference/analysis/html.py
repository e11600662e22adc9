"""The report's index.html: the runs, the study's claims with their evidence, figures, tables, notes."""

from html import escape

import pandas as pd
from etils import epath

from scaling_interference import storage
from scaling_interference.analysis import scaling, tables
from scaling_interference.reader import Run

STYLE = """body{font-family:sans-serif;max-width:1200px;margin:2em auto;line-height:1.4}
figure{margin:1em 0}img{max-width:100%;border:1px solid #ddd}figcaption{color:#444;font-size:.9em}
.held{color:#176b2c;font-weight:bold}.did-not-hold{color:#a11;font-weight:bold}
.not-measurable{color:#777;font-weight:bold}"""


def _claims_html(verdicts: pd.DataFrame) -> list[str]:
  """Each claim with every run's status and evidence, as an HTML list."""
  parts = ["<h2>Claims of the study, measured in this sweep</h2>", "<ol>"]
  for _, rows in verdicts.groupby("claim", sort=True):
    parts.append(f"<li><p><b>{escape(rows.statement.iloc[0])}</b></p><ul>")
    for r in rows.itertuples():
      css = r.status.replace(" ", "-")
      parts.append(f"<li>{escape(r.run)}: <span class='{css}'>{escape(r.status)}</span>. {escape(r.evidence)}</li>")
    parts.append("</ul></li>")
  return parts + ["</ol>"]


def write_index(
  out: epath.Path, runs: list[Run], labels: list[str], figures: dict, verdicts: pd.DataFrame, written: list[str], report
) -> epath.Path:
  """out/index.html: the claims, the figures with captions, links to the tables written, notes.

  report is the build's report.Report: its jobs, computing time per table and notes are listed.
  """
  parts = [
    f"<!doctype html><html><head><meta charset='utf-8'><title>scaling_interference report</title>"
    f"<style>{STYLE}</style></head><body><h1>scaling_interference report</h1>",
    "<ul>",
  ]
  parts += [
    f"<li>{escape(label)}: {escape(str(r.path))} ({scaling.family_name(r)}, widths "
    f"{sorted(r.members.width.unique().tolist())}, {len(r.tasks)} tasks, "
    f"last step {int(r.metrics.step.max())})</li>"
    for label, r in zip(labels, runs, strict=True)
  ]
  spent = ", ".join(f"{name} {sec:.1f}s" for name, sec in report.table_seconds.items())
  parts.append(
    f"</ul><p>Jobs: {len(report.computed)} computed ({len(report.failed)} failed), "
    f"{len(report.cached)} from the cache. Computing time per table: {spent or 'none'}.</p>"
  )
  if report.options:
    given = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in kw.items()) for name, kw in report.options.items())
    parts.append(f"<p>Table options: {escape(given)}.</p>")
  parts += _claims_html(verdicts)
  for label in labels:
    parts.append(f"<h2>Figures: {escape(label)}</h2>")
    parts += [
      f"<figure><img src='{escape(p)}' alt='{escape(p)}'><figcaption>{escape(c)}</figcaption></figure>"
      for p, c in figures[label]
    ]
  parts.append("<h2>Tables</h2><p>Column definitions: <a href='tables/README.md'>tables/README.md</a></p><ul>")
  parts += [f"<li><a href='tables/{n}.csv'>{n}.csv</a>: {escape(tables.SPECS[n].doc)}</li>" for n in written]
  parts.append("</ul>")
  if report.notes:
    parts += ["<h2>Notes</h2><ul>"] + [f"<li>{escape(n)}</li>" for n in report.notes] + ["</ul>"]
  parts.append("</body></html>")
  path = out / "index.html"
  storage.write_text(path, "\n".join(parts))
  return path
