"""Which tasks each width learned: a width x task table of signal, next to the oracle's.

For linear members of a family with target maps (regression) the table also shows each member's
projection on the targets (`Family.projection`: <M_kk, W*_k>_F / ||W*_k||_F^2, 1 on target, 0 for
an unrelated map) beside the norm signal ||M_kk||_F / ||W*_k||_F, which credits any block of the
target's size.
"""

import copy

import jax
import numpy as np
import pandas as pd

from scaling_interference.analysis import oracle
from scaling_interference.models.kinds import model_kind
from scaling_interference.reader import Run
from scaling_interference.tasks import family_class

SOURCES = ("trained", "projection", "oracle")  # the order of a width's rows


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


TOKEN_TASK_COLUMNS = [
  "size",
  "width",
  "name",
  "split",
  "task",
  "frequency",
  "accuracy",
  "accuracy_min",
  "accuracy_max",
  "signal",
  "members_learned",
  "members",
  "learned",
]


def token_task_table(run: Run, step: int | None = None, threshold: float = 0.5) -> pd.DataFrame:
  """Language runs: per (size, token task, split) the last eval's answer accuracy over the size's members,
  trained tuples beside held-out ones; learned: mean signal >= threshold. Empty for other runs."""
  if "task" in run.config:
    return pd.DataFrame(columns=TOKEN_TASK_COLUMNS)
  tasks = run.tasks[run.tasks.family != "base"].rename(columns={"id": "task"})
  trained_frequency = tasks[tasks.split == "train"].set_index("name").frequency
  rows = (
    final_task_metrics(run, step)
    .merge(run.members[["id", "size"]], on="id")
    .merge(tasks[["task", "name", "split"]], on="task")
  )
  table = rows.groupby(["size", "width", "name", "split", "task"], as_index=False).agg(
    accuracy=("accuracy", "mean"),
    accuracy_min=("accuracy", "min"),
    accuracy_max=("accuracy", "max"),
    signal=("signal", "mean"),
    members_learned=("signal", lambda s: int((s >= threshold).sum())),
    members=("signal", "size"),
  )
  table = table.assign(frequency=table["name"].map(trained_frequency), learned=table.signal >= threshold)
  return table.sort_values(["width", "task"], ignore_index=True)[TOKEN_TASK_COLUMNS]


def signal_table(run: Run, step: int | None = None) -> pd.DataFrame:
  """Rows (width, source): trained signal (mean over a width's members) and, with an oracle, the oracle's."""
  rows = final_task_metrics(run, step)
  trained = rows.groupby(["width", "task"]).signal.mean().unstack("task")
  trained.index = pd.MultiIndex.from_product([trained.index, ["trained"]], names=["width", "source"])
  if not has_oracle(run):
    return trained
  family = realised_family(run)
  best = pd.DataFrame(
    [oracle.oracle(family, int(w)).signal_K for w in trained.index.get_level_values(0)], columns=trained.columns
  )
  best.index = pd.MultiIndex.from_product([trained.index.get_level_values(0), ["oracle"]], names=["width", "source"])
  return _in_order(pd.concat([trained, best]))


def _in_order(table: pd.DataFrame) -> pd.DataFrame:
  """Rows by width, then source in SOURCES order."""
  return table.sort_index(key=lambda i: i.map(SOURCES.index) if i.name == "source" else i)


def has_linear_members(run: Run) -> bool:
  """Whether the run trains a task family with linear members, whose end-to-end maps are exact."""
  return (
    "task" in run.config and "model" in run.config and model_kind(run.config.model.name).is_linear(run.config.model)
  )


def member_maps(run: Run, step: int | None = None):
  """Yields (member, its end-to-end map M_IxO in float64, exact for linear members) at checkpoint `step`."""
  for group in run.groups:
    params = run.restore(step, group=group.index)["params"]
    for i, member in enumerate(group.members):
      yield member, np.asarray(group.model.linear_map(jax.tree.map(lambda a, i=i: a[i], params)), np.float64)


def projection_rows(run: Run, step: int | None = None) -> pd.DataFrame:
  """Per (width, member, task): Family.projection of the member's map at the last checkpoint at or before `step`.

  Empty where the members are not linear, the family has no target map, or there is no such checkpoint.
  """
  empty = pd.DataFrame({"width": [], "member": [], "task": [], "projection": []})
  checkpoints = [s for s in run.steps() if step is None or s <= step] if has_linear_members(run) else []
  if not checkpoints:
    return empty
  frames = []
  for member, map_IxO in member_maps(run, checkpoints[-1]):
    projection_K = run.family.projection(map_IxO)
    if projection_K is None:
      return empty
    frames.append(
      pd.DataFrame(
        {"width": member.width, "member": member.id, "task": np.arange(projection_K.size), "projection": projection_K}
      )
    )
  return pd.concat(frames, ignore_index=True)


def projection_table(run: Run, step: int | None = None) -> pd.DataFrame:
  """Rows (width, "projection"): mean projection over a width's members, tasks as columns (empty: none)."""
  rows = projection_rows(run, step)
  table = rows.groupby(["width", "task"]).projection.mean().unstack("task")
  table.index = pd.MultiIndex.from_product([table.index, ["projection"]], names=["width", "source"])
  return table


def total_loss_table(run: Run, step: int | None = None) -> pd.DataFrame:
  """Per width: frequency-weighted eval loss of the trained members vs the oracle (families with one)."""
  rows = final_task_metrics(run, step)
  p = run.tasks.sort_values("id").frequency.to_numpy(float)
  per_member = rows.groupby(["width", "member"]).apply(
    lambda r: float(np.dot(p[r.task.values], r.loss.values)), include_groups=False
  )
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
  family = realised_family(run)
  values = {(member.width, member.id): oracle.population_total(family, map_IxO) for member, map_IxO in member_maps(run)}
  return pd.Series(values).rename_axis(["width", "member"])


def render_language(run: Run, step: int | None = None) -> str:
  """A language run's printed summary: per size, each token task's answer accuracy on trained and held-out
  tuples (mean over the size's members, [min, max]) against the task's frequency, and the base-stream loss."""
  table = token_task_table(run, step)
  if table.empty:
    return "This run has no token tasks."
  sizes = table.drop_duplicates("size").sort_values("width")["size"].tolist()
  cell = table.assign(
    cell=[
      f"{a:.2f} [{lo:.2f}, {hi:.2f}]{' *' if learned else ''}"
      for a, lo, hi, learned in zip(table.accuracy, table.accuracy_min, table.accuracy_max, table.learned, strict=True)
    ]
  )
  grid = cell.pivot(index="size", columns=["name", "split"], values="cell").reindex(sizes)
  grid = grid[sorted(grid.columns, key=lambda c: (c[0], c[1] != "train"))]  # per task: trained, then held-out
  frequency = table.drop_duplicates("name").set_index("name").frequency
  grid.loc["frequency"] = [
    f"{frequency[name]:.3g}" if split == "train" else "0 (never shown)" for name, split in grid.columns
  ]
  grid = grid.reindex(["frequency", *sizes])
  base = final_task_metrics(run, step).merge(run.members[["id", "size"]], on="id")
  base_loss = base[base.task == 0].groupby("size").loss.mean().reindex(sizes)
  with pd.option_context("display.width", 250, "display.max_columns", 100):
    return "\n".join(
      [
        f"Answer accuracy per token task at step {int(final_task_metrics(run, step).step.max())}, mean over a "
        f"size's members [min, max]; * learned (mean signal >= 0.5); heldout: tuples never shown in training; "
        f"frequency: injected examples per sequence",
        grid.to_string(),
        "",
        "Base-stream eval loss per size (mean over members)",
        base_loss.to_string(float_format="{:.4g}".format),
      ]
    )


def render(run: Run, step: int | None = None) -> str:
  """The demo's printed report: task metadata, the width x task signal (and projection) table, total losses.

  Language runs get render_language."""
  if "task" not in run.config:
    return render_language(run, step)
  tasks = run.tasks.set_index("id")
  table, projection = signal_table(run, step), projection_table(run, step)
  if len(projection):
    table = _in_order(pd.concat([table, projection]))
  header = pd.DataFrame(
    [tasks.frequency.values, tasks.complexity.values],
    columns=table.columns,
    index=pd.MultiIndex.from_tuples([("task", "frequency"), ("task", "complexity")]),
  )
  notes = "; oracle = the best rank-width map" if has_oracle(run) else ""
  if len(projection):
    notes += (
      "; projection = <M_kk, W*_k> / ||W*_k||^2 of the members' maps (last checkpoint; 1 on target, "
      "0 for an unrelated map)"
    )
  with pd.option_context("display.width", 250, "display.max_columns", 100, "display.float_format", "{:.2f}".format):
    lines = [
      f"Signal per task (0 = nothing learned, 1 = the task's full map){notes}",
      pd.concat([header, table]).to_string(),
      "",
      "Mixture loss per width: frequency-weighted eval loss; for linear members also the exact population loss",
      total_loss_table(run, step).to_string(float_format="{:.4g}".format, formatters={"ratio": "{:.4f}".format}),
    ]
  return "\n".join(lines)
