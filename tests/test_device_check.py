"""benchmarks/device_check.py in its CPU smoke mode: every row is measured and the JSON holds it."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_device_check_smoke_measures_every_row(tmp_path):
  out = tmp_path / "check.json"
  result = subprocess.run(
    [sys.executable, "-m", "benchmarks.device_check", "--smoke", "--repeats=1", f"--out={out}"],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=600,
    env={**os.environ, "JAX_PLATFORMS": "cpu"},
  )
  assert result.returncode == 0, result.stderr[-3000:]
  rows = json.loads(out.read_text())["rows"]
  assert set(rows["matmul"]) == {"bfloat16", "float32"} and all(m["tflop_per_s"] > 0 for m in rows["matmul"].values())
  assert set(rows["regression"]) == {"bfloat16", "float32"}
  assert all(r["steps_per_s"] > 0 and r["matmul_fraction"] > 0 for r in rows["regression"].values())
  assert rows["tiny"]["members"] == 4 and rows["tiny"]["speedup"] > 0
  assert [r["size"] for r in rows["ladder"]] == ["tiny-a"]
  for row in rows["ladder"]:
    assert row["tokens_per_s"] > 0 and row["mfu_6n"] > 0
    assert row["compiled_bytes"] >= 4 * row["params"], "the compiled program holds at least the float32 parameters"
    assert row["estimate_bytes"] > 0
  assert "| OLMo tiny-a" in result.stdout and "tiny MLPs in one program vs one at a time" in result.stdout
