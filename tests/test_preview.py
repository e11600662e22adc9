"""preview_data shows the first batches with injected examples marked and the schedule counts."""

import re

from configs import injection
from scaling_interference.problems.preview import preview


def test_preview_marks_injected_examples_and_counts():
  config = injection.get_config("demo")
  config.inject.rare = dict(task=32, kind="share", share=0.0025)
  config.train.steps = 2000
  text = preview(config, steps=2, examples=3)
  step1 = text.split("step 1:")[1].split("step 2")[0]
  assert step1.count("<- injected (rare)") == 3  # 0.25% of 1024: 3 examples at step 1
  assert "burst: task 33, kind burst: 512 examples in 1 of 2000 steps" in text
  assert re.search(r"rare: task 32, kind share: 5120 examples in 2000 of 2000 steps \(share 0\.2500%\)", text)
