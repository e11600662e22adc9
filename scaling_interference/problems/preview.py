"""A readable look at the first batches of a config: task counts, injected examples, schedules."""

import jax
import numpy as np

from scaling_interference.config import validate
from scaling_interference.data.schedules import realised_counts
from scaling_interference.problems import make_problem
from scaling_interference.problems.language import LanguageProblem
from scaling_interference.problems.synthetic import FamilyProblem


def family_batch_lines(problem: FamilyProblem, step: int, examples: int) -> list[str]:
  family, injected = problem.family, {s.task: s.name for s in problem.schedules}
  batch = jax.device_get(problem.batch(step))
  counts = np.bincount(batch.task, minlength=family.num_tasks)
  top = ", ".join(f"{t}:{counts[t]}" for t in np.argsort(-counts)[:8] if counts[t])
  lines = [f"\nstep {step}: examples per task (top) {top}"]
  shown = [i for i in range(len(batch.task)) if batch.task[i] in injected][:examples]
  shown += [i for i in range(examples) if i not in shown][: max(0, examples - len(shown))]
  for i in shown:
    t = int(batch.task[i])
    mark = f"  <- injected ({injected[t]})" if t in injected else ""
    lines.append(f"  [{i:4d}] task {t:3d}: {family.describe_example(batch.x[i], batch.y[i], t)}{mark}")
  return lines


def token_row(problem: LanguageProblem, tokens_L, task_L, width: int = 24) -> str:
  """A row as token ids, injected examples decoded in brackets, from a little before the first one."""
  injected = np.flatnonzero(task_L)
  i = max(0, int(injected[0]) - 4) if injected.size else 0
  parts = ["..."] if i else []
  while i < len(tokens_L) and len(parts) < width:
    t = int(task_L[i])
    if t:
      task = problem.token_tasks[t - 1]
      parts.append(f"[{problem.names[t - 1]}: {task.decode(tokens_L[i : i + task.seq_len])}]")
      i += task.seq_len
    else:
      parts.append(str(int(tokens_L[i])))
      i += 1
  return " ".join(parts) + (" ..." if i < len(tokens_L) else "")


def language_batch_lines(problem: LanguageProblem, step: int, host, examples: int) -> list[str]:
  batch = jax.device_get(problem.batch(step, host))
  per_task = {
    problem.names[t - 1]: int((batch.answer_mask & (batch.task == t)).sum())
    for t in range(1, len(problem.token_tasks) + 1)
  }
  lines = [f"\nstep {step}: injected examples {per_task}"]
  rows = [b for b in range(batch.tokens.shape[0]) if batch.task[b].any()][:examples]
  rows += [b for b in range(examples) if b not in rows][: max(0, examples - len(rows))]
  for b in rows:
    mark = "  <- injected" if batch.task[b].any() else ""
    lines.append(f"  row {b:3d}: {token_row(problem, batch.tokens[b], batch.task[b])}{mark}")
  return lines


def preview(config, steps: int = 3, examples: int = 4) -> str:
  """Text of the first `steps` batches, injected examples marked, and the schedules' counts."""
  validate(config)
  problem = make_problem(config)
  lines = [
    f"{len(problem.tasks)} tasks, batch {config.train.batch_size}: "
    + ", ".join(
      f"{t.id}={t.name or t.family}" + (f"/{t.split}" if t.split != "train" else "") for t in problem.tasks[:12]
    )
    + (" ..." if len(problem.tasks) > 12 else "")
  ]
  host = problem.host_batches(steps)
  for step in range(steps):
    if isinstance(problem, LanguageProblem):
      lines += language_batch_lines(problem, step, None if host is None else host[step], examples)
    else:
      lines += family_batch_lines(problem, step, examples)
  lines += schedule_lines(problem, config.train.steps, steps)
  return "\n".join(lines)


def schedule_lines(problem, total_steps: int, shown_steps: int) -> list[str]:
  if not problem.schedules:
    return ["\nno injection schedules"]
  counts_SxZ = realised_counts(problem.schedules, total_steps)
  lines = ["\ninjection schedules over the run:"]
  for n, s in enumerate(problem.schedules):
    first = ", ".join(str(v) for v in counts_SxZ[:shown_steps, n])
    steps_with = np.flatnonzero(counts_SxZ[:, n])
    lines.append(
      f"  {s.name}: task {s.task}, kind {s.kind}: {counts_SxZ[:, n].sum()} examples in "
      f"{steps_with.size} of {total_steps} steps (share {counts_SxZ[:, n].sum() / (total_steps * s.batch_size):.4%}); "
      f"first steps: [{first}]; first injection at step {steps_with[0] if steps_with.size else 'never'}"
    )
  return lines
