"""The report's figures: each one's caption, the tables it needs, and how plots.py draws it from them."""
import dataclasses
import os
from typing import Callable

import pandas as pd

from scaling_interference.analysis import claims, plots, retention


@dataclasses.dataclass(frozen=True)
class FigureSpec:
  name: str
  caption: str
  needs: tuple
  draw: Callable


FIGURES = [
    FigureSpec("injection_signal", "The study's figure: signal of each injected task vs step, one line per width "
               "(dense traces where the run traced them); dashed lines mark burst/every injections. Small widths "
               "spike at an injection and decay; large widths accumulate and keep the task.",
               ("signal", "events"),
               lambda t: plots.signal_vs_step(retention.best_trajectories(t["signal"]), t["events"])),
    FigureSpec("retention", "Retained share of the injected tasks' signal vs width (event schedules: "
               "(final - pre) / (peak - pre) after the last event; continuous: final / peak).",
               ("retention",), lambda t: plots.retention_vs_width(t["retention"])),
    FigureSpec("final_signal",
               "Final signal per task vs width, coloured by task frequency: rarer tasks need wider members.",
               ("final",), lambda t: plots.final_signal_vs_width(t["final"])),
    FigureSpec("loss_fits", "Final loss per task vs width (log-log) with power-law fits "
               "(floor + a * width^-b; floor = the oracle's irreducible loss for regression).",
               ("final",),
               lambda t: plots.loss_vs_width(t["final"], t.get("power_law", pd.DataFrame(columns=["task"])))),
    FigureSpec("emergence", "Emergence width (smallest width with signal >= 0.5) vs task frequency, "
               "coloured by complexity; x: tasks no width learned.",
               ("emergence",), lambda t: plots.emergence_vs_frequency(t["emergence"])),
    FigureSpec("oracle", "Regression: trained signal vs the analytic oracle's (best rank-width map), "
               "one point per (width, task); the dashed diagonal is a perfect match.",
               ("oracle",), lambda t: plots.oracle_vs_trained(t["oracle"])),
    FigureSpec("grad_norm", "Per-task gradient norm vs width at the last checkpoint, coloured by frequency: "
               "common tasks' gradients shrink in wider members.",
               ("gradients",), lambda t: plots.grad_norm_vs_width(t["gradients"])),
    FigureSpec("overwrite", "Overwrite share of the injected (else the rarest) tasks vs width at each checkpoint: "
               "the part of the task's loss change caused by the other tasks' updates.",
               ("gradients", "final"), lambda t: plots.overwrite_vs_width(t["gradients"], claims.rare_tasks(t)[0])),
    FigureSpec("owned_neurons",
               "Neurons owned per task (left) and its feature capacity (right) vs its frequency at the "
               "last checkpoint, one line per width: small widths spend their neurons on frequent tasks.",
               ("allocation",), lambda t: plots.owned_neurons_vs_frequency(t["allocation"])),
    FigureSpec("decodable", "Task features decodable by probes vs width at the last checkpoint, one line per layer.",
               ("decodable",), lambda t: plots.decodable_vs_width(t["decodable"])),
]


def draw_figures(out: str, label: str, t: dict, notes: list) -> list[tuple[str, str]]:
  """Writes figures/<label>-<name>.png for each figure whose tables exist; returns (path, caption).

  A figure that fails to draw is left out, with a line in notes.
  """
  drawn = []
  for spec in FIGURES:
    if not all(n in t and len(t[n]) for n in spec.needs):
      continue
    try:
      fig = spec.draw(t)
    except Exception as e:  # noqa: BLE001 - one bad figure must not stop the report
      notes.append(f"figure {spec.name} of {label} failed: {type(e).__name__}: {e}")
      continue
    path = plots.save(fig, os.path.join(out, "figures", f"{label}-{spec.name}.png"))
    drawn.append((os.path.relpath(path, out), spec.caption))
  return drawn
