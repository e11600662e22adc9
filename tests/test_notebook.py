"""analysis/explore.ipynb runs top to bottom, headless, on a small injection run given by SI_WORKDIR."""

import json
import os

import pytest
from test_progress import SCRIPT, check_progress

nbclient = pytest.importorskip("nbclient", reason="nbclient is missing: pip install -e '.[notebook]'")
nbformat = pytest.importorskip("nbformat", reason="nbformat is missing: pip install -e '.[notebook]'")
pytest.importorskip("ipykernel", reason="ipykernel is missing: pip install -e '.[notebook]'")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "analysis", "explore.ipynb")


def test_notebook_is_valid_json_with_a_colab_install_cell():
  with open(NOTEBOOK) as f:
    nb = json.load(f)
  nbformat.validate(nbformat.reads(json.dumps(nb), as_version=4))
  install = "".join(nb["cells"][1]["source"])
  assert "google.colab" in install and "pip install" in install and "REPO_URL" in install
  every = "".join("".join(c["source"]) for c in nb["cells"])
  assert every.count("REPO_URL = ") == 1 and "YOUR_ORG" not in every, "one place sets the URL; no placeholder"
  assert "REPO_URL" in "".join(nb["cells"][0]["source"]), "the first cell says where to set it"


def test_notebook_runs_on_a_small_run(injection_workdir, tmp_path, monkeypatch):
  monkeypatch.setenv("SI_WORKDIR", injection_workdir)
  monkeypatch.setenv("SI_OUT", str(tmp_path / "out"))
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(
    nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": os.path.join(ROOT, "analysis")}}
  )
  client.execute()
  images = sum(
    1
    for cell in nb.cells
    if cell.cell_type == "code"
    for out in cell.get("outputs", [])
    if "image/png" in out.get("data", {})
  )
  assert images >= 6, f"the notebook drew {images} figures"
  assert os.path.exists(tmp_path / "out" / "index.html")


def test_a_notebook_cell_that_trains_shows_compilation_and_progress(tmp_path):
  """si.train in a Jupyter kernel: the compile line and the progress lines are the cell's output."""
  code = SCRIPT.format(tests=os.path.join(ROOT, "tests"), workdir=str(tmp_path / "run"))
  nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
  nbclient.NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": ROOT}}).execute()
  check_progress("".join(out.get("text", "") for out in nb.cells[0].outputs if out.output_type == "stream"))
