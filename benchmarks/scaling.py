"""The same sweep on 1, 2, 4 and 8 simulated CPU devices: do metrics agree, and what does sharding cost?

  JAX_PLATFORMS=cpu python -m benchmarks.scaling [--devices=1,2,4,8] [--steps=600] [--out=FILE.json]

Each device count runs in its own process (XLA_FLAGS=--xla_force_host_platform_device_count=N)
on the same machine: simulated devices share the same cores, so this measures the overhead of
sharding and collectives, not a speed-up. The table gives steps/s after compilation, and the
largest relative difference of every metric from the 1-device run.
"""

import json
import os
import subprocess
import sys
import tempfile

from absl import app, flags

_DEVICES = flags.DEFINE_list("devices", ["1", "2", "4", "8"], "Simulated device counts.")
_STEPS = flags.DEFINE_integer("steps", 600, "Training steps of the sweep.")
_OUT = flags.DEFINE_string("out", None, "Optional JSON file for the results.")

CHILD = """
import json, sys, time
import jax, jax.numpy as jnp
from configs import regression
from scaling_interference.sweep.build import build
from scaling_interference.sweep.engine import Engine
import scaling_interference as si
config = regression.get_config("demo")
config.model.widths = (16, 64, 256)
config.sweep.update(seeds=tuple(range(8)), lrs=(2e-2,))
config.train.update(steps=int(sys.argv[2]), eval_every=200, checkpoint_every=10**6, steps_per_dispatch=200)
problem, groups = build(config)
engine = Engine(config, problem, groups)
states = engine.init_states()
states, *_ = engine.train_segment(states, jnp.int32(0), 200)  # compile
jax.block_until_ready(states)
start = time.perf_counter()
for s in range(200, 200 + int(sys.argv[2]), 200):
  states, *_ = engine.train_segment(states, jnp.int32(s), 200)
jax.block_until_ready(states)
rate = int(sys.argv[2]) / (time.perf_counter() - start)
si.train(config, sys.argv[1])
print(json.dumps({"devices": len(jax.devices()), "steps_per_s": rate}))
"""


def run(devices: int, workdir: str, steps: int) -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  out = subprocess.run(
    [sys.executable, "-c", CHILD, workdir, str(steps)], cwd=root, env=env, check=True, capture_output=True, text=True
  ).stdout
  return json.loads(out.strip().splitlines()[-1])


def max_rel_diff(reference, other) -> float:
  import numpy as np  # pylint: disable=g-import-not-at-top

  import scaling_interference as si  # pylint: disable=g-import-not-at-top

  a, b = si.load_run(reference).metrics, si.load_run(other).metrics
  values = [(a[c].to_numpy(float), b[c].to_numpy(float)) for c in ("loss", "signal")]
  return max(float(np.nanmax(np.abs(x - y) / np.maximum(np.abs(x), 1e-6))) for x, y in values)


def main(argv):
  del argv
  rows, tmp = [], tempfile.mkdtemp()
  for n in map(int, _DEVICES.value):
    row = run(n, os.path.join(tmp, f"d{n}"), _STEPS.value)
    row["max_rel_diff_vs_1"] = max_rel_diff(os.path.join(tmp, f"d{_DEVICES.value[0]}"), os.path.join(tmp, f"d{n}"))
    rows.append(row)
  print(
    f"sweep: widths 16, 64, 256 x 8 seeds (24 members), {_STEPS.value} timed steps, batch 512; "
    f"cpu_count={os.cpu_count()}"
  )
  print("| devices | steps/s | vs 1 device | max relative metric difference vs 1 device |")
  print("|---:|---:|---:|---:|")
  for row in rows:
    print(
      f"| {row['devices']} | {row['steps_per_s']:.1f} | {row['steps_per_s'] / rows[0]['steps_per_s']:.2f}x "
      f"| {row['max_rel_diff_vs_1']:.1e} |"
    )
  if _OUT.value:
    with open(_OUT.value, "w") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  app.run(main)
