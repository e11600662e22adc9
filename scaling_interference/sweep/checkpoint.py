"""Orbax checkpoints of a sweep: one item per group (restorable alone) plus JSON metadata."""
import orbax.checkpoint as ocp

META = "meta"


def group_item(index: int) -> str:
  return f"group_{index}"


class Checkpoints:
  """A CheckpointManager over `directory`, saving asynchronously."""

  def __init__(self, directory: str, num_groups: int, max_to_keep: int = 3, keep_every: int = 0):
    self.num_groups = num_groups
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, keep_period=keep_every or None, create=True,
        enable_async_checkpointing=True)
    names = tuple(group_item(i) for i in range(num_groups)) + (META,)
    self.manager = ocp.CheckpointManager(directory, options=options, item_names=names)

  def latest_step(self):
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, states, meta: dict) -> None:
    items = {group_item(i): ocp.args.StandardSave(s) for i, s in enumerate(states)}
    items[META] = ocp.args.JsonSave(meta)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, step: int, abstract_states):
    """All groups' states (shaped like abstract_states) and the metadata at `step`."""
    items = {group_item(i): ocp.args.StandardRestore(a) for i, a in enumerate(abstract_states)}
    items[META] = ocp.args.JsonRestore()
    out = self.manager.restore(step, args=ocp.args.Composite(**items))
    return [out[group_item(i)] for i in range(self.num_groups)], out[META]

  def restore_group(self, step: int, index: int, abstract_state=None):
    """One group's state; as NumPy-backed arrays when no abstract target is given."""
    args = ocp.args.StandardRestore(abstract_state)
    return self.manager.restore(step, args=ocp.args.Composite(**{group_item(index): args}))[group_item(index)]

  def restore_meta(self, step: int) -> dict:
    return self.manager.restore(step, args=ocp.args.Composite(**{META: ocp.args.JsonRestore()}))[META]

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
