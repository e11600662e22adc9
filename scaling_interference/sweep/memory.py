"""Ahead-of-time memory check: the compiled training program's bytes per device against the device's.

XLA's memory analysis of the compiled program (arguments + outputs - aliased + temporaries +
code) is what one device needs; the device's limit comes from its memory stats (accelerators)
or, on CPU, from the host's available memory (/proc/meminfo). Where either is unknown the check
passes silently.
"""

import jax
import numpy as np

from scaling_interference.errors import ConfigError

GIB = 2**30


def program_bytes(compiled) -> int | None:
  """Bytes one device needs to run `compiled` (a jax Compiled); None where XLA gives no analysis."""
  m = compiled.memory_analysis()
  if m is None:
    return None
  return int(
    m.argument_size_in_bytes
    + m.output_size_in_bytes
    - m.alias_size_in_bytes
    + m.temp_size_in_bytes
    + m.generated_code_size_in_bytes
  )


def available_bytes(device) -> int | None:
  """Bytes free on `device`: its memory stats' limit minus use, or on CPU the host's MemAvailable; None if unknown."""
  if device.platform != "cpu":
    stats = device.memory_stats() or {}
    return int(stats["bytes_limit"] - stats.get("bytes_in_use", 0)) if "bytes_limit" in stats else None
  try:
    with open("/proc/meminfo") as f:
      fields = dict(line.split(":", 1) for line in f)
  except OSError:
    return None
  return int(fields["MemAvailable"].split()[0]) * 1024 if "MemAvailable" in fields else None


def state_bytes(abstract_state) -> int:
  """Bytes of one group's stacked state (parameters, optimizer state) from its abstract leaves."""
  return int(sum(np.prod(a.shape) * a.dtype.itemsize for a in jax.tree.leaves(abstract_state)))


def check_fits(needed: int | None, available: int | None, groups, abstract_states, device) -> None:
  """Raises ConfigError naming the largest group, the bytes needed and available, and what to change."""
  if needed is None or available is None or needed <= available:
    return
  sizes = [state_bytes(s) for s in abstract_states]
  big = groups[int(np.argmax(sizes))]
  raise ConfigError(
    f"memory: the training program needs {needed / GIB:.2f} GiB per device and {device.platform} device "
    f"{device.id} has {available / GIB:.2f} GiB free; the largest group is group {big.index} ({big.size} "
    f"member(s), {max(sizes) / GIB:.2f} GiB of parameters and optimizer state, like "
    f"{big.members[0].describe()}); lower train.batch_size, train fewer members per group (sweep.seeds, "
    "sweep.lrs) or smaller widths/sizes, set model.remat (language models), or train.fsdp over more devices"
  )
