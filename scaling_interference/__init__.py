"""scaling_interference: which tasks a model of a given size learns, and why.

Tensor names carry their shapes: the suffix after the last underscore has one capital letter per
axis, joined by 'x' (x_BxI: batch by inputs); a digit is an axis of that literal size (cos_Lx1xF).
Each letter means one thing throughout the package, its benchmarks and tests:

  A  operand tuples of a token task's held-out split (drawn operand sets, or their orderings)
  B  examples of a batch
  C  task classes of an interference replay
  D  feature width: d_model, a task's input block (regression's d, sparse parity's n bits), a
     probed representation, the rows of a generic helper's block or matrix
  E  successors of a token in the synthetic language (`successors` of them per token)
  F  rotary frequencies (H / 2)
  G  ridge penalties of a probe (`RIDGE_GRID`)
  H  attention head size (d_head)
  I  input features of a model or layer
  J  operands of a task's answer: a token-task example's operands, a sparse-parity subset's bits
  K  a run's tasks
  L  token positions of a row
  M  members (of a group, or of a run)
  N  examples; also any 1-D list of items whose kind its name says (rows_N, step_N)
  O  outputs of a model (a probe's target columns)
  P  flattened parameters
  Q  token positions of one token-task example (marker, operands, separator, answer; padded)
  R  target directions of a regression task (its r = min(d, m) singular vectors)
  S  steps (training steps, or the steps that inject examples)
  T  tasks selected by id (task_T holds the ids)
  U  update terms of a replay: one per class, then history and weight decay; or those terms
     grouped by their role for a task (TERMS)
  V  vocabulary (token ids)
  W  hidden units (an MLP's width, OLMo's MLP hidden size)
  X  blocks of a split axis: chunks of tasks, attention heads (d_model = X * H)
  Y  a regression task's output block (m coordinates)
  Z  injection schedules
"""

import importlib
import importlib.metadata
import os
from typing import TYPE_CHECKING, Any


def _quiet_false_cache_alarm() -> None:
  """jaxlib 0.10.0 and 0.10.1 log a false "Target machine feature +prefer-no-gather is not supported"
  error each time a program loads from the persistent compilation cache (the features are tuning
  hints, not instructions). On those versions C++ logs below FATAL are off unless
  TF_CPP_MIN_LOG_LEVEL is set. (jaxlib 0.10.2 is excluded: it miscompiles on CPU, jax issue 39103.)"""
  try:
    version = importlib.metadata.version("jaxlib")
  except importlib.metadata.PackageNotFoundError:
    return
  if version in ("0.10.0", "0.10.1"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


_quiet_false_cache_alarm()

if TYPE_CHECKING:  # the names __getattr__ brings, for type checkers
  from scaling_interference.reader import Run, load_run
  from scaling_interference.sweep.build import build
  from scaling_interference.sweep.loop import train

__all__ = ["Run", "build", "load_run", "train"]
_HOMES = {"build": "sweep.build", "train": "sweep.loop", "Run": "reader", "load_run": "reader"}


def __getattr__(name: str) -> Any:
  """The public API on first use: the reader brings pandas, which a training process never needs, and
  build and train bring jax, which the cluster launchers (they print and submit commands) never need."""
  if name in _HOMES:
    return getattr(importlib.import_module(f"scaling_interference.{_HOMES[name]}"), name)
  raise AttributeError(f"module 'scaling_interference' has no attribute {name!r}")


__version__ = "0.1.0"
