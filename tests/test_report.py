"""The report on a small injection run: index.html names every claim, figures are PNGs, tables match
their documentation, and the cache makes a second build compute nothing."""

import dataclasses
import io
import os
import pathlib

import jax
import numpy as np
import pandas as pd
import pytest
from etils import epath

import scaling_interference as si
from scaling_interference.analysis import claims, report, tables
from scaling_interference.errors import ReplayError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPLAY = {"replay": dict(events=2, max_steps=20)}  # short replay windows: the test stays fast
NO_REPLAY = ("replay", "replay_steps", "counterfactual")
STEP_TABLES = ("next_update", "next_update_cosines", "neurons", "allocation")


@pytest.fixture(scope="module")
def workdir(injection_workdir):
  return injection_workdir


@pytest.fixture(scope="module")
def built(workdir, tmp_path_factory):
  """Builds with the last step only, then with all steps, then again: (out, three reports)."""
  out = str(tmp_path_factory.mktemp("out"))
  return out, [report.build([workdir], out, steps=s, options=REPLAY) for s in ("last", "all", "all")]


def test_index_names_every_claim_and_shows_figures(built):
  out, (_, full, _) = built
  text = pathlib.Path(out, "index.html").read_text()
  for statement in claims.CLAIMS.values():
    assert statement.replace("'", "&#x27;") in text, f"index.html lacks the claim {statement!r}"
  assert len(full.claims) == len(claims.CLAIMS)
  assert set(full.claims.status) <= {claims.HELD, claims.NOT_HELD, claims.NOT_MEASURABLE}
  figures = sorted(os.listdir(os.path.join(out, "figures")))
  for name in (
    "run-replay.png",
    "run-injection_signal.png",
    "run-final_signal.png",
    "run-loss_fits.png",
    "run-emergence.png",
    "run-oracle.png",
    "run-retention.png",
    "run-event_average.png",
    "run-injection_loss.png",
  ):
    assert name in figures, f"missing figure {name}; made {figures}"
  for name in figures:
    with open(os.path.join(out, "figures", name), "rb") as f:
      data = f.read()
    assert data.startswith(PNG_MAGIC) and len(data) > 5000, f"{name} is not a drawn PNG"
    assert f"figures/{name}" in text, f"index.html does not show {name}"


def test_tables_have_the_documented_columns(built):
  out, _ = built
  folder = os.path.join(out, "tables")
  readme = pathlib.Path(folder, "README.md").read_text()
  for name in sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".csv")):
    frame = pd.read_csv(os.path.join(folder, f"{name}.csv"))
    documented = list(tables.SPECS[name].columns)
    assert frame.columns[0] == "run"
    assert set(documented) <= set(frame.columns), f"{name}.csv lacks {set(documented) - set(frame.columns)}"
    for column in frame.columns:
      assert f"| {column} |" in readme, f"README.md does not document {name}.{column}"
  for name in (
    "signal",
    "events",
    "retention",
    "event_average",
    "final",
    "power_law",
    "emergence",
    "learned",
    "oracle",
    "sizing",
    "replay",
    "replay_steps",
    "counterfactual",
    "claims",
  ):
    assert os.path.exists(os.path.join(folder, f"{name}.csv")), f"missing table {name}.csv"


def test_cache_computes_only_what_is_new(built, workdir):
  _, (last, full, again) = built
  first, final = si.load_run(workdir).steps()
  assert {(j.table, j.step) for j in last.computed if j.step == 0} == {("probes", 0)}, "probes run at the init too"
  step_tables = {j.table for j in last.computed if j.step not in (None, 0)}
  assert step_tables and all(j.step == final for j in last.computed if j.step not in (None, 0))
  retried = {(j.table, j.step) for j in last.failed}
  new = {(j.table, j.step) for j in full.computed} - retried
  assert new == {(t, first) for t in step_tables}, "after a build at the last step only the earlier checkpoint is new"
  retried |= {(j.table, j.step) for j in full.failed}
  assert {(j.table, j.step) for j in again.computed} <= retried, "a third build recomputes only failed jobs"
  assert len(again.cached) + len(again.computed) == len(full.cached) + len(full.computed)


def test_table_options_are_part_of_the_cache_key(workdir, tmp_path):
  run = si.load_run(workdir)

  def path(table, events):
    return report.cache_path(epath.Path("out"), run, report.Job(0, table, None), {"replay": {"events": events}})

  assert path("replay", 2) != path("replay", 3), "other replay options: the replay is computed again"
  assert path("final", 2) == path("final", 3), "a table without options keeps its cached results"
  with pytest.raises(ValueError, match="options: unknown names"):
    report.build([workdir], str(tmp_path), options={"probe": {}})


def test_probes_run_at_the_seeded_init(built, workdir):
  out, _ = built
  run = si.load_run(workdir)
  assert 0 not in run.steps(), "the run has no checkpoint 0: step 0 is the seeded init"
  state, (init, meta) = run.restore(0, group=0), run.restore_all(0)
  for a, b in zip(
    jax.tree.leaves(state["params"]), jax.tree.leaves(run.engine.init_states()[0]["params"]), strict=True
  ):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert len(init) == len(run.groups) and meta == {"step": 0}
  counts = pd.read_csv(os.path.join(out, "tables", "decodable.csv"))
  assert {0, *run.steps()} == set(counts.step), "decodable counts at the init and at every checkpoint"


def fake_probes(monkeypatch, fail: bool) -> None:
  """Stand-in probe tables: trained wider members decode more features (1 at init), or a probe that raises."""

  def probe_table(run, step):
    if fail:
      raise RuntimeError("probe exploded")
    rows = [
      dict(
        step=step,
        member=m.id,
        width=m.width,
        layer=0,
        task=t,
        feature="answer",
        metric="r2",
        value=m.width / 16,
        decodable=t < (m.width / 4 if step else 1),
      )
      for m in run.members.itertuples()
      for t in range(6)
    ]
    return pd.DataFrame(rows)

  def decodable_counts(df):
    return (
      df.groupby(["step", "member", "width", "layer"], as_index=False)
      .decodable.sum()
      .rename(columns={"decodable": "n_decodable"})
    )

  fake_tables(monkeypatch, {"probes": probe_table, "decodable": decodable_counts})


def fake_tables(monkeypatch, fakes: dict) -> None:
  """The tables' specs with the functions in `fakes` ({table: function}) in place of their own."""
  specs = {name: dataclasses.replace(spec, fn=fakes.get(name, spec.fn)) for name, spec in tables.SPECS.items()}
  monkeypatch.setattr(tables, "SPECS", specs)
  monkeypatch.setattr(tables, "TABLES", [specs[spec.name] for spec in tables.TABLES])


def test_a_replay_that_does_not_reproduce_training_is_a_failed_job(workdir, tmp_path, monkeypatch):
  def replay_fails(run, **options):
    raise ReplayError("the replay of window [1, 21) differs from training: the replay does not reproduce training")

  fake_tables(monkeypatch, dict.fromkeys(NO_REPLAY, replay_fails))
  result = report.build([workdir], str(tmp_path), steps="last", skip=STEP_TABLES + ("probes",), options=REPLAY)
  assert {j.table for j in result.failed} == set(NO_REPLAY)
  assert any("ReplayError" in n and "does not reproduce training" in n for n in result.notes), result.notes
  by_claim = result.claims.set_index("claim")
  for number in (3, 4):
    assert by_claim.loc[number, "status"] == claims.NOT_MEASURABLE
    assert by_claim.loc[number, "evidence"].startswith("the replay table was not computed")


def test_a_failing_table_leaves_a_note_and_the_report_builds(workdir, tmp_path, monkeypatch):
  fake_probes(monkeypatch, fail=True)
  skip = STEP_TABLES + NO_REPLAY
  result = report.build([workdir], str(tmp_path), steps="last", skip=skip)
  assert [(j.table, j.step) for j in result.failed] == [("probes", 0), ("probes", 60)]
  assert any("probe exploded" in n for n in result.notes)
  assert "probe exploded" in pathlib.Path(result.index).read_text()
  by_claim = result.claims.set_index("claim")
  assert by_claim.loc[6, "status"] == claims.NOT_MEASURABLE
  again = report.build([workdir], str(tmp_path), steps="last", skip=skip)
  assert {j.table for j in again.computed} == {"probes"}, "a failed job is retried, the rest is cached"


def test_probe_claim_and_figure_from_a_working_table(workdir, tmp_path, monkeypatch):
  fake_probes(monkeypatch, fail=False)
  result = report.build([workdir], str(tmp_path), steps="last", skip=STEP_TABLES + NO_REPLAY)
  by_claim = result.claims.set_index("claim")
  assert by_claim.loc[6, "status"] == claims.HELD, by_claim.loc[6, "evidence"]
  assert "per width: 8: 1, 16: 3" in by_claim.loc[6, "evidence"], "gains over the init: 2 - 1 and 4 - 1"
  assert os.path.exists(os.path.join(str(tmp_path), "figures", "run-decodable.png"))
  counts = pd.read_csv(os.path.join(str(tmp_path), "tables", "decodable.csv"))
  assert list(counts.n_decodable) == [1, 1, 2, 4], "at init 1 of 6 features; trained widths 8 and 16: 2 and 4"


def retention_rows(retained_by_width: dict) -> pd.DataFrame:
  return pd.DataFrame(
    [
      dict(
        member=i,
        width=w,
        task=4,
        schedule="rare",
        kind="share",
        event_step=0,
        pre=0.0,
        peak=1.0,
        peak_step=10,
        steps_to_peak=10,
        half_life=np.nan,
        final=r,
        retained=r,
      )
      for i, (w, r) in enumerate(retained_by_width.items())
    ]
  )


@pytest.mark.parametrize(
  "retained,status",
  [
    ({16: 0.01, 32: 0.05, 64: 0.9}, claims.HELD),
    ({16: 0.9, 32: 0.5, 64: 0.1}, claims.NOT_HELD),
    ({16: 0.01, 32: 0.02, 64: 0.03}, claims.NOT_HELD),
  ],
)
def test_injection_claim_verdicts(workdir, retained, status):
  result, evidence = claims.CLAIM_CHECKS[7]({"retention": retention_rows(retained)}, si.load_run(workdir))
  assert result == status, evidence


def test_claims_without_tables_are_not_measurable(workdir):
  verdicts = claims.evaluate_claims({}, si.load_run(workdir))
  assert list(verdicts.claim) == list(claims.CLAIMS)
  assert (verdicts.status == claims.NOT_MEASURABLE).all()


def test_progress_bar_counts_jobs_with_an_eta():
  stream = io.StringIO()
  with report.progress_bar(4, stream=stream) as bar:
    for i in range(4):
      bar.set_postfix_str(f"job {i}")
      bar.update()
  text = stream.getvalue()
  assert "report: 100%" in text and "4/4" in text and "<00:00" in text, text  # elapsed<remaining: the ETA
