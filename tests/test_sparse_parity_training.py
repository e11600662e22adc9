"""A wide member learns the most frequent sparse-parity tasks in a short run."""
import scaling_interference as si
from scaling_interference import defaults


def test_wide_member_learns_frequent_parities(tmp_path):
  config = defaults.base_config(defaults.sparse_parity_task())
  config.task.update(num_tasks=10, n_bits=16, k=3, alpha=1.4)
  config.model.update(widths=(128,), activation="relu")
  config.sweep.lrs = (3e-3,)
  config.train.update(steps=1500, batch_size=1024, eval_every=500, checkpoint_every=1500,
                      steps_per_dispatch=250, eval_examples_per_task=512)
  si.train(config, str(tmp_path / "run"))
  metrics = si.load_run(str(tmp_path / "run")).metrics
  final = metrics[(metrics.step == 1500) & (metrics.task != "all")].set_index("task")
  assert (final.loc[[0, 1, 2], "accuracy"] > 0.95).all(), final.accuracy.tolist()
  assert (final.loc[[0, 1, 2], "signal"] > 0.9).all()
  untrained = metrics[(metrics.step == 0) & (metrics.task != "all")]
  assert untrained.accuracy.between(0.35, 0.65).all(), "chance accuracy before training"
