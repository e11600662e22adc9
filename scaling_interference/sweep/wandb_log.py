"""Weights & Biases logging of a run (optional: `pip install 'scaling_interference[wandb]'`), written by
process 0 when `train.wandb_project` is set: the same series as sweep/tensorboard.py, one W&B run per member.

Each member's run is named like its TensorBoard run, grouped by the workdir's name, with the member's
hyperparameters as its config, so W&B's grouping and filters pick members by width, seed or lr. Its id
is fixed by the workdir and the member (resume="allow"): a resumed process continues the same runs, and
W&B ignores steps a run already has. WANDB_MODE=offline writes the runs locally (`wandb sync` uploads them).
"""

import hashlib
import os

from scaling_interference import storage
from scaling_interference.errors import ConfigError
from scaling_interference.sweep.tensorboard import hparams, run_name, task_tag


def run_id(workdir, member_id: int) -> str:
  """A W&B run id that names one member of one workdir, the same in every process that resumes it."""
  return hashlib.sha1(f"{workdir}#{member_id}".encode()).hexdigest()[:16]


class WandbLog:
  """One W&B run per member (see the module docstring); the interface of TensorBoardLog."""

  def __init__(self, project: str, workdir, members, tasks):
    try:
      import wandb  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      raise ConfigError(
        "train.wandb_project: W&B logging needs the wandb package, which is not installed; "
        "pip install 'scaling_interference[wandb]'"
      ) from e
    folder = None if storage.is_remote(workdir) else str(workdir)
    self.members, self.tags = list(members), {t.id: task_tag(t) for t in tasks}
    self.runs = {
      m.id: wandb.init(
        project=project,
        group=os.path.basename(str(workdir).rstrip("/")),
        name=run_name(m),
        id=run_id(workdir, m.id),
        resume="allow",
        reinit="create_new",
        config={**hparams(m), "workdir": str(workdir)},
        dir=folder,
      )
      for m in self.members
    }

  def train_loss(self, step: int, loss_M) -> None:
    for member, loss in zip(self.members, loss_M, strict=True):
      if loss == loss:  # not NaN: a frozen member has no loss
        self.runs[member.id].log({"train/loss": float(loss)}, step=step)

  def eval_rows(self, rows: list[dict], train_loss: bool = False) -> None:
    """Every row of one eval, one log call per (member, step)."""
    del train_loss  # live runs log the dispatch's training loss instead
    logged: dict = {}
    for row in rows:
      if row["task"] == "all":
        continue
      values = logged.setdefault((row["member"], int(row["step"])), {})
      tag = self.tags[int(row["task"])]
      values.update({f"eval/{f}/{tag}": row[f] for f in ("loss", "signal", "accuracy") if row[f] is not None})
    for (member, step), values in logged.items():
      self.runs[member].log(values, step=step)

  def close(self) -> None:
    for run in self.runs.values():
      run.finish()
