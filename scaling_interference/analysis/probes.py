"""Closed-form ridge probes from each layer's representation to task features.

Representations: the input x, every hidden layer's post-activations ("hidden0", ...) and the
output ("output"), on fixed eval examples (`n_per_task` per task, by default the problem's
`probe_examples_per_task`; the run's eval key). Each task's examples are split in order (they
are i.i.d.): the first 60% train the probe, the next 20% choose the ridge penalty, the last 20%
measure it.

Probe: columns standardised on the train split, then w = (X^T X + lambda I)^-1 X^T y on centred
data (an intercept); lambda = g * n_train with g from `RIDGE_GRID`, chosen per target column by
validation mean squared error.

Features of task k:
  task_id   one ridge over all tasks' examples on one-hot targets, prediction by argmax; the
            value is the held-out recall of task k. The probe reads [h, h^2]: a task can be
            told by which units are active rather than their sign (the regression input's
            blocks are zero-mean, so no linear readout of x alone tells them apart).
  the family's features (`Family.probe_features`, defined with each family):
    regression  z@v{r} (input block k on the task's r-th right singular vector) and answer
                (output block k), R^2, fitted on ALL tasks' examples;
    sparse parity  bit{b} (each bit of the task's subset) and answer (the parity), accuracy,
                fitted on task k's examples;
    a family that defines none is probed for task_id only.

Language-model runs (a LanguageProblem): layers "embed", "block1", ... are the residual streams
(the embedding, after each block) at the position predicting the answer, on `n_per_task` train
examples of each token task (key: the eval key folded with `LM_PROBE_KEY`), each after the
eval's `eval_prefix` base tokens. Task k is token task k (its train id); fitted on its examples:
    operand{j}  the j-th operand's value, metric accuracy (ridge on one-hot, argmax readout);
    answer      the answer's value, accuracy (likewise).
  task_id (as above, on the pooled examples) only when the run has two or more token tasks.
R^2 = 1 - sum (y - y_hat)^2 / sum (y - mean y)^2 over the held-out rows (pooled over columns).
A feature is decodable when R^2 >= 0.5 or accuracy >= 0.9 (`THRESHOLDS`).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from scaling_interference.models import MLPDef
from scaling_interference.models.olmo import OLMoDef
from scaling_interference.problems.language import LanguageProblem
from scaling_interference.problems.synthetic import eval_examples
from scaling_interference.reader import Run
from scaling_interference.tasks import Batch, Family

RIDGE_GRID = (1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
SPLITS = (0.6, 0.2)  # train, validation shares; the rest is held out
THRESHOLDS = {"r2": 0.5, "accuracy": 0.9}
LM_PROBE_KEY = 20_011  # folded into the eval key: the language-model probe examples


# ---- ridge -----------------------------------------------------------------------------
def ridge_fit(x_NxD, y_NxO, lam: float):
  """(w_DxO, b_O) minimising ||x w + b - y||^2 + lam ||w||^2 (the intercept is not penalised)."""
  x, y = np.asarray(x_NxD, np.float64), np.asarray(y_NxO, np.float64)
  x_mean, y_mean = x.mean(0), y.mean(0)
  xc = x - x_mean
  w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - y_mean))
  return w, y_mean - x_mean @ w


def ridge_path(x_NxD, y_NxO, lams) -> tuple[np.ndarray, np.ndarray]:
  """(w_GxDxO, b_GxO) for every lam in lams, from one eigendecomposition of the centred x^T x."""
  x, y = np.asarray(x_NxD, np.float64), np.asarray(y_NxO, np.float64)
  x_mean, y_mean = x.mean(0), y.mean(0)
  xc = x - x_mean
  e_D, q_DxD = np.linalg.eigh(xc.T @ xc)
  proj_DxO = q_DxD.T @ (xc.T @ (y - y_mean))
  w = np.stack([q_DxD @ (proj_DxO / (np.maximum(e_D, 0.0) + lam)[:, None]) for lam in lams])
  return w, y_mean[None] - np.einsum("d,ldo->lo", x_mean, w)


def _standardise(x_train, *others):
  mean, std = x_train.mean(0), x_train.std(0)
  std = np.where(std > 0, std, 1.0)
  return [(a - mean) / std for a in (x_train,) + others]


def probe_predictions(x_NxD, y_NxO, split_N: np.ndarray, grid=RIDGE_GRID) -> np.ndarray:
  """Held-out (split 2) predictions, lambda chosen per column on the validation split (1)."""
  x_tr, x_val, x_te = _standardise(*(np.asarray(x_NxD, np.float64)[split_N == s] for s in range(3)))
  y = np.asarray(y_NxO, np.float64)
  w, b = ridge_path(x_tr, y[split_N == 0], [g * len(x_tr) for g in grid])
  val_err_GxO = np.square(np.matmul(x_val, w) + b[:, None] - y[split_N == 1][None]).mean(1)
  best_O = val_err_GxO.argmin(0)
  pred_GxNxO = np.matmul(x_te, w) + b[:, None]
  return np.take_along_axis(pred_GxNxO, best_O[None, None, :], axis=0)[0]


def r2(y_NxO, pred_NxO) -> float:
  """Pooled coefficient of determination (NaN when y is constant)."""
  y = np.asarray(y_NxO, np.float64)
  total = np.square(y - y.mean(0)).sum()
  return float(1.0 - np.square(y - pred_NxO).sum() / total) if total > 0 else float("nan")


def split_labels(n: int, splits=SPLITS) -> np.ndarray:
  """(n,) 0 train, 1 validation, 2 held out, in order."""
  cuts = np.cumsum([int(round(s * n)) for s in splits])
  return np.searchsorted(cuts, np.arange(n), side="right")


# ---- representations ----------------------------------------------------------------------
@functools.partial(jax.jit, static_argnums=0)
def representations(model: MLPDef, params_M: dict, x_NxI) -> dict:
  """{"input": (N, I), "hidden{i}": (M, N, W), "output": (M, N, O)} of a group's members."""

  def member(params):
    mlp = model.bind(params)
    return mlp.hidden_states(x_NxI), mlp(x_NxI)

  hidden, out = jax.vmap(member)(params_M)
  return {"input": x_NxI} | {f"hidden{i}": h for i, h in enumerate(hidden)} | {"output": out}


@functools.partial(jax.jit, static_argnums=(0, 3))
def lm_representations(model: OLMoDef, params_M: dict, tokens_NxL, position: int) -> list:
  """n_layers + 1 residual streams (M, N, D) at `position` ("embed", "block1", ...), a member at a time."""
  return jax.lax.map(lambda p: [h[:, position] for h in model.hidden_states(p, tokens_NxL)], params_M)


# ---- features -----------------------------------------------------------------------------
def lm_examples(problem, n: int) -> list[dict]:
  """Per token task: n train examples after `eval_prefix` base tokens, answer token dropped.

  Each: tokens (n, L) (the last position predicts the answer), operands (n, J), answer (n,).
  """
  key = jax.random.fold_in(problem.eval_key, LM_PROBE_KEY)
  prefix = jnp.resize(problem.eval_rows[:, : problem.eval_prefix], (n, problem.eval_prefix))
  out = []
  for i, task in enumerate(problem.token_tasks):
    example = task.sample(jax.random.fold_in(key, i), n, "train")
    out.append(example | {"tokens": jnp.concatenate([prefix, example["tokens"][:, :-1]], axis=1)})
  return out


def lm_features(task, example: dict) -> dict:
  """{feature: ("accuracy", one-hot targets (n, num_values))}: each operand and the answer."""
  operands_NxJ, eye = np.asarray(example["operands"]), np.eye(task.num_values)
  return {f"operand{j + 1}": ("accuracy", eye[operands_NxJ[:, j]]) for j in range(operands_NxJ.shape[1])} | {
    "answer": ("accuracy", eye[np.asarray(example["answer"])])
  }


def _score(metric: str, y_NxO, pred_NxO) -> float:
  """R^2, or accuracy: one 0/1 column thresholded at 0.5, several (one-hot) by argmax."""
  if metric == "r2":
    return r2(y_NxO, pred_NxO)
  if y_NxO.shape[1] > 1:
    return float(np.mean(pred_NxO.argmax(1) == y_NxO.argmax(1)))
  return float(np.mean((pred_NxO > 0.5) == (y_NxO > 0.5)))


def feature_scores(rep_NxD, features: dict, split_N, rows_N=None) -> dict:
  """{key: (metric, held-out value)} of ridge probes from one representation to each feature.

  features: {key: (metric, targets (N, O))}, fitted together (one penalty per target column)
  on the examples rows_N (default: all).
  """
  rows_N = np.ones(len(split_N), bool) if rows_N is None else rows_N
  keys = list(features)
  y_NxO = np.concatenate([features[f][1] for f in keys], axis=1)[rows_N]
  pred = probe_predictions(np.asarray(rep_NxD)[rows_N], y_NxO, split_N[rows_N])
  edges = np.cumsum([0] + [features[f][1].shape[1] for f in keys])
  y_te = y_NxO[split_N[rows_N] == 2]
  return {
    f: (features[f][0], _score(features[f][0], y_te[:, a:b], pred[:, a:b]))
    for f, a, b in zip(keys, edges[:-1], edges[1:], strict=True)
  }


def task_id_recall(rep_NxD, task_N, num_tasks: int, split_N) -> np.ndarray:
  """(T,) held-out recall of each task from a one-vs-rest ridge on [h, h^2], argmax readout."""
  rep = np.asarray(rep_NxD, np.float64)
  pred = probe_predictions(np.concatenate([rep, np.square(rep)], 1), np.eye(num_tasks)[task_N], split_N)
  held = task_N[split_N == 2]
  hit = pred.argmax(1) == held
  return np.array([hit[held == t].mean() for t in range(num_tasks)])


# ---- tables -----------------------------------------------------------------------------
def _layer_rows(family: Family, batch: Batch, sets: list, rep_NxD, split_N) -> list[dict]:
  rows = [
    {"task": t, "feature": "task_id", "metric": "accuracy", "value": v}
    for t, v in enumerate(task_id_recall(rep_NxD, np.asarray(batch.task), family.num_tasks, split_N))
  ]
  for rows_N, features in sets:
    scores = feature_scores(rep_NxD, features, split_N, rows_N)
    rows += [{"task": t, "feature": f, "metric": metric, "value": v} for (t, f), (metric, v) in scores.items()]
  return rows


def _mlp_frames(run: Run, step: int, n_per_task: int) -> list[pd.DataFrame]:
  family = run.family
  batch = eval_examples(family, run.problem.eval_key, jnp.arange(family.num_tasks), n_per_task)
  sets, split_N = family.probe_features(jax.device_get(batch)), np.tile(split_labels(n_per_task), family.num_tasks)
  frames = []
  for group in run.groups:
    reps = jax.device_get(representations(group.model, run.restore(step, group=group.index)["params"], batch.x))
    for m, member in enumerate(group.members):
      for layer, rep in reps.items():
        rows = _layer_rows(family, batch, sets, rep if layer == "input" else rep[m], split_N)
        frames.append(pd.DataFrame(rows).assign(member=member.id, width=member.width, layer=layer))
  return frames


def _lm_layer_rows(tasks: list, examples: list[dict], reps_T: list, split_N) -> list[dict]:
  """Rows of one layer of one member; reps_T: per token task, its examples' representations (n, D)."""
  rows = []
  if len(tasks) > 1:
    task_N = np.repeat(np.arange(len(tasks)), len(split_N))
    recall = task_id_recall(np.concatenate(reps_T), task_N, len(tasks), np.tile(split_N, len(tasks)))
    rows += [{"task": t + 1, "feature": "task_id", "metric": "accuracy", "value": v} for t, v in enumerate(recall)]
  for t, (task, example, rep) in enumerate(zip(tasks, examples, reps_T, strict=True)):
    scores = feature_scores(rep, lm_features(task, example), split_N)
    rows += [{"task": t + 1, "feature": f, "metric": metric, "value": v} for f, (metric, v) in scores.items()]
  return rows


def _lm_frames(run: Run, step: int, n_per_task: int) -> list[pd.DataFrame]:
  problem = run.problem
  assert isinstance(problem, LanguageProblem), "a language-model run"
  examples, split_N = lm_examples(problem, n_per_task), split_labels(n_per_task)
  frames = []
  for group in run.groups:
    params_M = run.restore(step, group=group.index)["params"]
    reps_T = [
      jax.device_get(lm_representations(group.model, params_M, e["tokens"], e["tokens"].shape[1] - 1)) for e in examples
    ]
    for m, member in enumerate(group.members):
      for i in range(len(reps_T[0])):
        rows = _lm_layer_rows(problem.token_tasks, examples, [r[i][m] for r in reps_T], split_N)
        layer = "embed" if i == 0 else f"block{i}"
        frames.append(pd.DataFrame(rows).assign(member=member.id, width=member.width, layer=layer))
  return frames


def probe_table(run: Run, step: int, n_per_task: int | None = None) -> pd.DataFrame:
  """One row per (member, layer, task, feature) at `step`.

  Columns: step, member, width, layer ("input", "hidden0", ..., "output"; language models:
  "embed", "block1", ...), task, feature (task_id, z@v{r}/bit{b}/operand{j}, answer), metric
  ("r2" or "accuracy"), value (held out), decodable. n_per_task: default the problem's
  `probe_examples_per_task`.
  """
  n = run.problem.probe_examples_per_task if n_per_task is None else n_per_task
  frames = _lm_frames(run, step, n) if isinstance(run.problem, LanguageProblem) else _mlp_frames(run, step, n)
  table = pd.concat(frames, ignore_index=True).assign(step=step)
  table["decodable"] = table.value >= table.metric.map(THRESHOLDS)
  return table[["step", "member", "width", "layer", "task", "feature", "metric", "value", "decodable"]]


def decodable_counts(probe_df: pd.DataFrame) -> pd.DataFrame:
  """Decodable features per (step, member, width, layer): column n_decodable."""
  keys = ["step", "member", "width", "layer"]
  return probe_df.groupby(keys, sort=False).decodable.sum().rename("n_decodable").reset_index()
