"""Which tasks each width learned: a width x task table of signal, next to the oracle's."""
import copy

import jax
import numpy as np
import pandas as pd

from scaling_interference.analysis import oracle
from scaling_interference.reader import Run
from scaling_interference.tasks import family_class


def has_oracle(run: Run) -> bool:
  """Whether the run's task family has the analytic oracle (Family.has_oracle); language runs have none."""
  return "task" in run.config and family_class(run.config.task.family).has_oracle


def realised_family(run: Run):
  """The run's oracle family with the frequencies its mixture realised (injected tasks included).

  The oracle ranks directions by frequency x importance, so it must see the run's actual mixture.
  """
  family = copy.copy(run.family)
  family.frequencies = run.tasks.sort_values("id").frequency.to_numpy(float)
  return family


def final_task_metrics(run: Run, step: int | None = None) -> pd.DataFrame:
  """Per-task eval rows at `step` (default: the last eval), joined with member columns."""
  metrics = run.metrics[run.metrics.task != "all"]
  step = int(metrics.step.max()) if step is None else step
  rows = metrics[metrics.step == step].astype({"task": int})
  return rows.merge(run.members[["id", "width", "seed", "lr"]], left_on="member", right_on="id")


def signal_table(run: Run, step: int | None = None) -> pd.DataFrame:
  """Rows (width, source): trained signal (mean over a width's members) and, with an oracle, the oracle's."""
  rows = final_task_metrics(run, step)
  trained = rows.groupby(["width", "task"]).signal.mean().unstack("task")
  trained.index = pd.MultiIndex.from_product([trained.index, ["trained"]], names=["width", "source"])
  if not has_oracle(run):
    return trained
  family = realised_family(run)
  best = pd.DataFrame([oracle.oracle(family, int(w)).signal_K for w in trained.index.get_level_values(0)],
                      columns=trained.columns)
  best.index = pd.MultiIndex.from_product([trained.index.get_level_values(0), ["oracle"]], names=["width", "source"])
  order = {"trained": 0, "oracle": 1}
  return pd.concat([trained, best]).sort_index(key=lambda i: i.map(order) if i.name == "source" else i)


def total_loss_table(run: Run, step: int | None = None) -> pd.DataFrame:
  """Per width: frequency-weighted eval loss of the trained members vs the oracle (families with one)."""
  rows = final_task_metrics(run, step)
  p = run.tasks.sort_values("id").frequency.to_numpy(float)
  per_member = rows.groupby(["width", "member"]).apply(lambda r: float(np.dot(p[r.task.values], r.loss.values)),
                                                       include_groups=False)
  table = per_member.groupby("width").mean().to_frame("eval_loss")
  if not has_oracle(run):
    return table
  if run.config.model.activation == "linear":
    table["population_loss"] = population_losses(run).groupby("width").mean()
  table["oracle_loss"] = [oracle.oracle(realised_family(run), int(w)).total_loss for w in table.index]
  trained = table.get("population_loss", table.eval_loss)
  table["ratio"] = trained / table.oracle_loss.where(table.oracle_loss > 0)
  return table


def population_losses(run: Run) -> pd.Series:
  """Exact mixture loss of each linear member at the last checkpoint, indexed by (width, member)."""
  family, values = realised_family(run), {}
  for group in run.groups:
    params = run.restore(group=group.index)["params"]
    for i, member in enumerate(group.members):
      map_IxO = np.asarray(group.model.linear_map(jax.tree.map(lambda a: a[i], params)), np.float64)
      values[(member.width, member.id)] = oracle.population_total(family, map_IxO)
  return pd.Series(values).rename_axis(["width", "member"])


def render(run: Run, step: int | None = None) -> str:
  """The demo's printed report: task metadata, the width x task signal table, total losses."""
  tasks = run.tasks.set_index("id")
  table = signal_table(run, step)
  header = pd.DataFrame([tasks.frequency.values, tasks.complexity.values], columns=table.columns,
                        index=pd.MultiIndex.from_tuples([("task", "frequency"), ("task", "complexity")]))
  oracle_note = "; oracle = the best rank-width map" if has_oracle(run) else ""
  with pd.option_context("display.width", 250, "display.max_columns", 100, "display.float_format", "{:.2f}".format):
    lines = [f"Signal per task (0 = nothing learned, 1 = the task's full map){oracle_note}",
             pd.concat([header, table]).to_string(), "",
             "Mixture loss per width: frequency-weighted eval loss; for linear members also the exact population loss",
             total_loss_table(run, step).to_string(float_format="{:.4g}".format, formatters={"ratio": "{:.4f}".format})]
  return "\n".join(lines)
