"""The report's tables: each one's scope, the function that makes it, and its documented columns.

TableSpec("final", "run", scaling.final_table, doc, columns): scaling.final_table(run) is one run's table;
a "step" table's function takes (run, step). A spec with `options` also takes the report's options of
that name as keywords (report.build(options={"replay": {...}})); a "step" table with `at_init` is also
computed at step 0, the seeded init. tables_readme documents them as tables/README.md.
"""

import dataclasses
from collections.abc import Callable

import pandas as pd

from scaling_interference.analysis import (
  allocation,
  claims,
  gradients,
  learned,
  probes,
  replay_tables,
  retention,
  scaling,
)


@dataclasses.dataclass(frozen=True)
class TableSpec:
  """One tidy table: per run ("run") or per checkpoint step ("step"), made by the function `fn`."""

  name: str
  scope: str
  fn: Callable
  doc: str
  columns: dict
  options: str | None = None  # the report options (a key of build's options) passed to fn as keywords
  at_init: bool = False  # a "step" table also computed at step 0 (the seeded init, Run.restore)

  @property
  def source(self) -> str:
    """module:qualname of the function that makes the table."""
    return f"{self.fn.__module__}:{self.fn.__qualname__}"


RUN = {"run": "the workdir's name (its folder; made unique when two share one)"}
STEP = {"step": "checkpoint step the table was computed at (0: the seeded init)"}
MEMBER = {"member": "member id (members.json)", "width": "the member's hidden width"}
TASK = {
  "task": "task id",
  "frequency": "the task's realised share of training examples (injection included)",
  "complexity": "the task's complexity (family specific; larger is harder)",
}

TABLES = [
  TableSpec(
    "signal",
    "run",
    retention.trace_frame,
    "Signal of every task over training: eval metrics and dense traces (one row per observation).",
    {
      "step": "training steps done when the signal was measured",
      **MEMBER,
      "task": TASK["task"],
      "signal": "0 = chance, 1 = learned",
      "loss": "the task's loss (token tasks: answer-token cross-entropy); NaN where not traced",
      "source": "metrics (eval every eval_every) or traces (traces.npz)",
    },
  ),
  TableSpec(
    "events",
    "run",
    retention.event_frame,
    "Injection events of schedule.npz: one row per (schedule, step with injected examples).",
    {
      "schedule": "schedule name (config.inject)",
      "task": "injected task id",
      "kind": "burst | every | share | per_batch",
      "step": "batch step of the injection",
      "count": "examples injected at that step",
    },
  ),
  TableSpec(
    "retention",
    "run",
    retention.retention_table,
    "Per (member, injected task, schedule, measure, event): the signal, and the loss, around the event "
    "(definitions in retention.py).",
    {
      **MEMBER,
      "task": TASK["task"],
      "schedule": "schedule name",
      "kind": "schedule kind",
      "measure": "signal, or loss (pre, peak, final are losses; the peak is the lowest loss)",
      "event_step": "event's batch step (continuous schedules: the first injection)",
      "pre": "signal at the last observation at or before event_step",
      "peak": "largest signal in the window after the event (until the next event or the end)",
      "peak_step": "step of the peak",
      "steps_to_peak": "peak_step - event_step",
      "half_life": "steps from the peak until the signal first falls halfway back to pre (NaN: never)",
      "final": "signal at the window's last observation",
      "retained": "events, and loss: (final - pre) / (peak - pre); signal of continuous schedules: final / peak",
    },
  ),
  TableSpec(
    "event_average",
    "run",
    retention.event_average_table,
    "Per (member, injected task, event schedule, measure, lag): the event-triggered average, the mean "
    "over the schedule's events of the change since the level before each (definitions in retention.py).",
    {
      **MEMBER,
      "task": TASK["task"],
      "schedule": "schedule name (burst or every)",
      "kind": "schedule kind",
      "measure": "signal, or loss",
      "part": 'all (every event), or the quarter of the run whose events are averaged ("0-999")',
      "lag": "steps after the event (1 .. the shortest gap between events)",
      "change": "mean over the events of value(event + lag) - value before the event",
      "events": "events with an observation at that lag",
    },
  ),
  TableSpec(
    "final",
    "run",
    scaling.final_table,
    "Per (width, task): loss and signal at the last eval, mean over the width's members.",
    {
      "width": "hidden width",
      "task": TASK["task"],
      "loss": "mean final eval loss",
      "signal": "mean final signal",
      "projection": "mean <M_kk, W*_k>_F / ||W*_k||_F^2 of the members' linear maps at the last checkpoint "
      "(1: the target, 0: an unrelated map, negative: opposed; NaN: non-linear members or no "
      "target map)",
      "frequency": TASK["frequency"],
      "complexity": TASK["complexity"],
    },
  ),
  TableSpec(
    "power_law",
    "run",
    scaling.power_law_table,
    "Per task: least-squares fit of log(final loss - floor) on log(width); degenerate tasks skipped.",
    {
      **{k: TASK[k] for k in TASK},
      "exponent": "b in loss - floor = a * width^-b (> 0: falls with width)",
      "prefactor": "a",
      "r2": "R^2 of the log-log fit",
      "n": "widths in the fit",
      "floor": "irreducible loss subtracted (regression: label noise; else 0)",
    },
  ),
  TableSpec(
    "emergence",
    "run",
    scaling.emergence_table,
    "Per task: the smallest width whose mean final signal reaches 0.5.",
    {
      **{k: TASK[k] for k in TASK},
      "emergence_width": "smallest width with signal >= 0.5 (NaN: none)",
      "max_signal": "largest mean final signal over widths",
    },
  ),
  TableSpec(
    "learned",
    "run",
    scaling.learned_counts,
    "Per width: tasks learned (mean final signal >= 0.5).",
    {"width": "hidden width", "n_learned": "tasks with signal >= 0.5", "n_tasks": "tasks in the run"},
  ),
  TableSpec(
    "token_tasks",
    "run",
    learned.token_task_table,
    "Language runs: per (size, token task, split) the answer accuracy at the last eval over the size's "
    "members, trained tuples beside held-out ones (empty for other runs).",
    {
      "size": "model size (ladder preset or D/H/L)",
      "width": "d_model",
      "name": "token task (config.token_tasks)",
      "split": "train: tuples trained on; heldout: tuples never shown in training",
      "task": TASK["task"],
      "frequency": "the trained task's realised share of training rows (held-out rows too)",
      "accuracy": "mean answer accuracy over the size's members",
      "accuracy_min": "lowest member's",
      "accuracy_max": "highest member's",
      "signal": "mean (accuracy - chance) / (1 - chance)",
      "members_learned": "members with signal >= 0.5",
      "members": "members of the size",
      "learned": "mean signal >= 0.5",
    },
  ),
  TableSpec(
    "oracle",
    "run",
    scaling.oracle_comparison,
    "Regression: per (width, task) the trained mean beside the best rank-width linear map (realised frequencies).",
    {
      "width": "hidden width",
      **{k: TASK[k] for k in TASK},
      "trained_signal": "mean final signal",
      "oracle_signal": "signal of the best rank-width map",
      "trained_loss": "mean final eval loss",
      "oracle_loss": "loss of the best rank-width map",
      "zero_loss": "loss of the zero map",
    },
  ),
  TableSpec(
    "sizing",
    "run",
    scaling.sizing_table,
    "For a task frequency (half-decade bin) and complexity: the smallest width of this sweep that learned it.",
    {
      "frequency_bin": "frequency range [low, high)",
      "frequency_low": "bin's lower edge",
      "frequency_high": "bin's upper edge",
      "complexity": "complexity (binned when it takes many values)",
      "n_tasks": "tasks in the bin",
      "n_learned": "of them, learned by some width",
      "width_any": "smallest width that learned some task of the bin",
      "width_all": "smallest width that learned every task of the bin (NaN: some never learned)",
    },
  ),
  TableSpec(
    "replay",
    "run",
    replay_tables.replay_table,
    "Per (window, member, task of interest): an exact replay of the training steps after an injection "
    "event, each task's loss change over the window attributed to the update's task classes "
    "(replay_tables.py; report options 'replay': events, max_steps, by, n_common). Empty when the run "
    "injects no task.",
    replay_tables.REPLAY_DOCS,
    options="replay",
  ),
  TableSpec(
    "replay_steps",
    "run",
    replay_tables.replay_steps_table,
    "Per (window, member, step, task of interest): the replay step by step (signal, loss, attributed loss changes).",
    replay_tables.STEP_DOCS,
    options="replay",
  ),
  TableSpec(
    "counterfactual",
    "run",
    replay_tables.counterfactual_table,
    "Per (window, member): the window's injected task as trained and replayed without the common tasks' updates.",
    replay_tables.COUNTERFACTUAL_DOCS,
    options="replay",
  ),
  TableSpec(
    "next_update",
    "step",
    gradients.gradient_table,
    "Per (member, task) at a checkpoint: a next-update estimate from fixed eval examples (per-task "
    "gradient norms and the first-order loss changes of the update the optimizer would take next). "
    "It describes the state at the checkpoint, not the training dynamics (the replay tables measure "
    "those).",
    {
      **STEP,
      **MEMBER,
      "task": TASK["task"],
      "frequency": "task share used for the mixture gradient",
      "common": "among the most frequent tasks covering 90% of the mixture",
      "grad_norm": "||g_k||",
      "dL_self": "task k's own update's change of its loss",
      "dL_carry": "change from the optimizer's momentum",
      "dL_mixture": "change from the whole update",
      "overwrite": "change caused by the other tasks' updates",
      "overwrite_common": "part of overwrite from common tasks",
      "overwrite_rare": "part from the other tasks",
      "overwrite_share": "overwrite / (|dL_carry| + |dL_self| + |overwrite|), in [-1, 1]",
    },
  ),
  TableSpec(
    "next_update_cosines",
    "step",
    gradients.cosine_table,
    "Per (member, task_i, task_j) at a checkpoint: cosine of the tasks' gradients on fixed eval "
    "examples and task j's part of the next-update estimate acting on task i; a description of the "
    "state, not of the training dynamics.",
    {
      **STEP,
      **MEMBER,
      "task_i": "task whose loss changes",
      "task_j": "task whose update acts",
      "cosine": "cos(g_i, g_j)",
      "dL": "first-order change of task i's loss from task j's update",
    },
  ),
  TableSpec(
    "neurons",
    "step",
    allocation.neuron_table,
    "Per (member, layer, neuron, task) at a checkpoint: how much the neuron serves the task.",
    {
      **STEP,
      **MEMBER,
      "layer": "hidden layer",
      "neuron": "unit index",
      "task": TASK["task"],
      "attribution": "increase of the task's eval loss when the neuron is zeroed (ablation)",
    },
  ),
  TableSpec(
    "allocation",
    "step",
    allocation.allocation_table,
    "Per (member, task) at a checkpoint: neurons the task owns and its capacity.",
    {
      **STEP,
      **MEMBER,
      **TASK,
      "owned_neurons": "neurons owned by the task (most of their ablation loss)",
      "capacity": "sum of the dimensionalities D_i of the task's input features (Elhage et al. 2022)",
    },
  ),
  TableSpec(
    "probes",
    "step",
    probes.probe_table,
    "Per (member, layer, task, feature) at a checkpoint and at step 0 (the seeded init): a linear probe's score.",
    {
      **STEP,
      **MEMBER,
      "layer": "representation probed (MLP: input, hidden<i>, output; language model: embed, block<i>, "
      "the residual stream at the answer-predicting position)",
      "task": TASK["task"],
      "feature": "probed task feature",
      "metric": "the probe's score name",
      "value": "the score",
      "decodable": "the score passes the threshold",
    },
    at_init=True,
  ),
]
DERIVED = {
  "decodable": TableSpec(
    "decodable",
    "step",
    probes.decodable_counts,
    "Per (member, layer) at a checkpoint and at step 0: task features the probes decode (from probes).",
    {**STEP, **MEMBER, "layer": "representation probed", "n_decodable": "decodable features"},
  ),
  "claims": TableSpec(
    "claims",
    "run",
    claims.evaluate_claims,
    "Per (run, claim): whether the study's claim held in this sweep, with the measured numbers.",
    {
      "claim": "claim number (1..7)",
      "statement": "the claim",
      "status": "held, did not hold, or not measurable",
      "evidence": "the measured numbers",
    },
  ),
}
SPECS = {spec.name: spec for spec in TABLES} | DERIVED
OPTION_DEFAULTS = {"replay": replay_tables.DEFAULTS}  # the keywords each option group's functions take


def tables_readme(frames: dict) -> str:
  """Markdown documenting each table and every column; frames: {table: {run label: frame}} of this report."""
  lines = ["# Tables", "", "One row per observation (tidy); every table starts with `run`: " + RUN["run"] + ".", ""]
  for name, spec in SPECS.items():
    lines += [f"## {name}.csv", "", spec.doc + (" Per checkpoint step." if spec.scope == "step" else ""), ""]
    if name not in frames:
      lines += ["Not produced in this report (see the notes in index.html).", ""]
    columns = ["run"] + list(spec.columns)
    if name in frames:
      present = pd.concat(list(frames[name].values())).columns
      columns += [c for c in present if c not in spec.columns and c != "run"]
    lines += ["| column | meaning |", "| --- | --- |"]
    meaning = {"run": RUN["run"], **spec.columns}
    lines += [f"| {c} | {meaning.get(c, 'see ' + spec.source).replace('|', chr(92) + '|')} |" for c in columns]
    lines.append("")
  return "\n".join(lines)
