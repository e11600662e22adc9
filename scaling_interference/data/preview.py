"""A readable look at the first batches of a config: task counts, injected examples, schedules."""
import jax
import numpy as np

from scaling_interference.config import validate
from scaling_interference.data.schedules import realised_counts
from scaling_interference.sweep.engine import Engine, train_batch
from scaling_interference.sweep.members import expand


def describe_example(family, x_I: np.ndarray, y, task: int) -> str:
  """One example as text: the nonzero part of its input and its target."""
  if family.name == "regression":
    d, m = family.task_input_dim, family.task_output_dim
    z, target = x_I[task * d:(task + 1) * d], np.asarray(y)[task * m:(task + 1) * m]
    return f"z={np.array2string(z, precision=2, max_line_width=200)} -> y={np.array2string(target, precision=2, max_line_width=200)}"
  if family.name == "sparse_parity":
    bits = "".join(str(int(b)) for b in x_I[family.num_tasks:])
    return f"bits={bits} subset={family.subsets_KxS[task].tolist()} -> parity={int(y)}"
  return f"x={np.array2string(x_I, precision=2, threshold=16)} -> y={y}"


def preview(config, steps: int = 3, examples: int = 4) -> str:
  """Text of the first `steps` batches, injected examples marked, and the schedules' counts."""
  family = validate(config)
  engine = Engine(config, family, expand(config, family))
  injected = {s.task: s.name for s in engine.mixture.schedules}
  lines = [f"family {family.name}: {family.num_tasks} tasks, batch {config.train.batch_size}"]
  for step in range(steps):
    batch = jax.device_get(train_batch(family, engine.mixture, engine.train_key, step, config.train.batch_size))
    counts = np.bincount(batch.task, minlength=family.num_tasks)
    top = ", ".join(f"{t}:{counts[t]}" for t in np.argsort(-counts)[:8] if counts[t])
    lines.append(f"\nstep {step}: examples per task (top) {top}")
    shown = [i for i in range(len(batch.task)) if batch.task[i] in injected][:examples]
    shown += [i for i in range(examples) if i not in shown][:max(0, examples - len(shown))]
    for i in shown:
      t = int(batch.task[i])
      mark = f"  <- injected ({injected[t]})" if t in injected else ""
      lines.append(f"  [{i:4d}] task {t:3d}: {describe_example(family, batch.x[i], batch.y[i], t)}{mark}")
  lines += schedule_lines(engine, config.train.steps, steps)
  return "\n".join(lines)


def schedule_lines(engine: Engine, total_steps: int, shown_steps: int) -> list[str]:
  schedules = engine.mixture.schedules
  if not schedules:
    return ["\nno injection schedules"]
  counts_SxN = realised_counts(schedules, total_steps)
  lines = ["\ninjection schedules over the run:"]
  for n, s in enumerate(schedules):
    first = ", ".join(str(v) for v in counts_SxN[:shown_steps, n])
    steps_with = np.flatnonzero(counts_SxN[:, n])
    lines.append(f"  {s.name}: task {s.task}, kind {s.kind}: {counts_SxN[:, n].sum()} examples in "
                 f"{steps_with.size} of {total_steps} steps (share {counts_SxN[:, n].sum() / (total_steps * s.batch_size):.4%}); "
                 f"first steps: [{first}]; first injection at step {steps_with[0] if steps_with.size else 'never'}")
  return lines
