"""Reports: selection on validation only, paired tests, every layout's tables, the
report command on a work directory as written today, TensorBoard event files."""
import csv
import hashlib
import io
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import types

import numpy as np
import pytest
from scipy import stats

from jaxrec import analysis, results
from jaxrec.analysis import tables
from jaxrec.analysis.layouts import LAYOUTS
from jaxrec.analysis.select import choose
from tests.helpers import REPO

BASE_CONFIG = dict(model="milk", data="synthetic", protocol="new_item", setting="fm",
                   missing_rate=None, fill="mean", split_seed=0, seed=0, lr=1e-3,
                   penalty_weight=50.0, align_weight=0.5, alpha=0.1, c_max=1e-3, c_min=1e-5,
                   use_align=1.0, use_envs=1.0, use_uniform_env=1.0, cyclic=1.0,
                   random_mix=1.0)


def record(val: float, test: float, *, diverged: int = 0, **coords) -> dict:
  """A results.jsonl record: `coords` are the grid axes, the config fills the rest."""
  config = {**BASE_CONFIG, **coords}
  run_id = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
  return {"run_id": run_id, "group": f"g-{config['model']}", "coords": dict(coords),
          "config": config, "selected_epoch": 10, "epochs_trained": 40,
          "diverged_epoch": diverged,
          "val": {"ndcg@10": val, "recall@20": 2 * val, "ndcg@20": val},
          "test": {"ndcg@10": test, "recall@20": 2 * test, "ndcg@20": test}}


def grid_records(axes: dict, *, score, seed=0) -> list[dict]:
  """One record per point of `axes`; val and test = score(coords) + noise per seed."""
  rng = np.random.default_rng(seed)
  out = []
  for values in itertools.product(*axes.values()):
    coords = dict(zip(axes, values))
    base = score(coords)
    out.append(record(base + rng.normal(0, 1e-3), base + rng.normal(0, 1e-3), **coords))
  return out


# --- selection -------------------------------------------------------------------------

def planted() -> list[dict]:
  """lr 1e-3 is best on validation, lr 1e-2 best on test (per seed)."""
  out = []
  for seed in range(4):
    out.append(record(0.30 + 0.01 * seed, 0.10, model="milk", lr=1e-3, seed=seed))
    out.append(record(0.20 + 0.01 * seed, 0.40, model="milk", lr=1e-2, seed=seed))
    out.append(record(0.25, 0.50, model="milk", lr=1e-1, seed=seed))
  return out


def test_select_picks_the_validation_best_point_not_the_test_best():
  (sel,) = analysis.select(planted())
  assert sel.point == {"lr": 1e-3}
  assert sel.n_points == 3 and len(sel.runs) == 4 and sel.n_tied == 0
  assert sel.test["ndcg@10"].mean == pytest.approx(0.10)
  np.testing.assert_allclose(sel.val.mean, np.mean([0.30, 0.31, 0.32, 0.33]))


class Poisoned(dict):
  """A test-metric dict that fails on any read."""

  def _fail(self, *args, **kwargs):
    raise AssertionError("a test metric was read while choosing")

  __getitem__ = get = keys = values = items = __iter__ = __len__ = __contains__ = _fail


@pytest.mark.parametrize("hide", ["poisoned", "nan", "absent"])
def test_choosing_reads_no_test_metric(hide):
  records = planted()
  for rec in records:
    if hide == "poisoned":
      rec["test"] = Poisoned()
    elif hide == "nan":
      rec["test"] = {k: math.nan for k in rec["test"]}
    else:
      del rec["test"]
  (chosen,) = analysis.choose(records)
  assert chosen.point == {"lr": 1e-3} and chosen.test == {}
  if hide != "poisoned":
    (sel,) = analysis.select(records)
    assert sel.point == {"lr": 1e-3}


def test_select_refuses_a_test_metric():
  with pytest.raises(ValueError, match="val.<metric>"):
    analysis.select(planted(), metric="test.ndcg@10")


def test_any_validation_metric_selects():
  records = planted()
  for rec in records:    # recall@20 on validation now prefers lr 1e-1
    rec["val"]["recall@20"] = 1.0 if rec["coords"]["lr"] == 1e-1 else 0.0
  (sel,) = analysis.select(records, metric="val.recall@20")
  assert sel.point == {"lr": 1e-1}


def test_cells_split_on_cell_axes_and_seeds_are_not_points():
  records = [record(0.1 * (m == "milk") + 0.01 * lr, 0.0, model=m, setting=s, lr=lr,
                    seed=seed, split_seed=split)
             for m in ("milk", "heater") for s in ("fm", "mm") for lr in (1, 2)
             for seed in range(3) for split in range(2)]
  sels = analysis.select(records)
  assert [(s.cell["model"], s.cell["setting"]) for s in sels] == [
      ("heater", "fm"), ("heater", "mm"), ("milk", "fm"), ("milk", "mm")]
  assert all(s.point == {"lr": 2} and s.n_points == 2 and len(s.runs) == 6 for s in sels)
  sources = analysis.variation_sources(sels)
  assert len(sources) == 2 and "split_seed" in sources[1]


def test_runs_that_differ_outside_their_coordinates_are_other_points_not_more_seeds():
  # Two work directories joined by `report --also`: the same model and seeds,
  # one run with patience 3 and one with 12, a field in neither's coordinates.
  def run(patience, val, seed):
    rec = record(val, val, model="milk", seed=seed)
    rec["config"] = {**rec["config"], "patience": patience}
    rec["run_id"] = f"{rec['run_id']}-{patience}"
    return rec
  records = [run(3, 0.2, seed) for seed in range(3)] + [run(12, 0.3, seed) for seed in range(3)]
  (sel,) = analysis.select(records)
  assert sel.point == {"patience": 12} and sel.n_points == 2 and len(sel.runs) == 3
  assert sorted(r["coords"]["seed"] for r in sel.runs) == [0, 1, 2]
  # Within one directory nothing outside the coordinates varies: no extra point field.
  (alone,) = analysis.select(records[:3])
  assert alone.point == {} and alone.n_points == 1


def test_ties_prefer_more_seeds_then_the_first_point():
  records = [record(0.5, 0.0, lr=lr, seed=seed) for lr in (1e-2, 1e-3) for seed in range(3)]
  records.append(record(0.5, 0.0, lr=1e-1, seed=0))
  (sel,) = analysis.select(records)
  assert sel.point == {"lr": 1e-3} and sel.n_tied == 2    # sorted: 0.001 < 0.01


def test_diverged_runs_count_and_can_make_a_point_ineligible():
  records = [record(0.9, 0.0, lr=1e-2, seed=s, diverged=5 * (s == 0)) for s in range(3)]
  records += [record(0.5, 0.0, lr=1e-3, seed=s) for s in range(3)]
  (sel,) = analysis.select(records)
  assert sel.point == {"lr": 1e-2} and sel.n_diverged == 1
  (safe,) = analysis.select(records, drop_diverged=True)
  assert safe.point == {"lr": 1e-3} and safe.n_diverged == 0


def test_a_non_finite_point_is_never_preferred():
  records = [record(math.nan if s == 0 else 0.9, 0.0, lr=1e-2, seed=s) for s in range(3)]
  records += [record(0.5, 0.0, lr=1e-3, seed=s) for s in range(3)]
  assert analysis.select(records)[0].point == {"lr": 1e-3}


def test_interval_is_the_t_interval():
  iv = analysis.interval([1.0, 2.0, 3.0, 4.0])
  std = math.sqrt(5 / 3)
  half = 3.182446305284263 * std / 2          # t_{3, 0.975}
  assert (iv.mean, iv.n) == (2.5, 4)
  np.testing.assert_allclose([iv.std, iv.low, iv.high], [std, 2.5 - half, 2.5 + half])
  one = analysis.interval([0.3])
  assert one.mean == 0.3 and math.isnan(one.std) and math.isnan(one.low)


# --- significance ----------------------------------------------------------------------

A = [0.052, 0.049, 0.057, 0.050, 0.061, 0.047, 0.055, 0.058]
B = [0.047, 0.048, 0.050, 0.046, 0.052, 0.049, 0.050, 0.051]


def test_paired_tests_agree_with_scipy_and_by_hand():
  p = analysis.paired_tests(A, B)
  d = np.subtract(A, B)
  t_hand = d.mean() / (d.std(ddof=1) / math.sqrt(len(d)))
  np.testing.assert_allclose(p.t, t_hand, rtol=1e-12)
  ref_t, ref_w = stats.ttest_rel(A, B), stats.wilcoxon(A, B)
  np.testing.assert_allclose([p.t, p.p_t, p.w, p.p_w],
                             [ref_t.statistic, ref_t.pvalue, ref_w.statistic, ref_w.pvalue])
  # The p-value from the t distribution by hand, two-sided.
  np.testing.assert_allclose(p.p_t, 2 * stats.t.sf(abs(t_hand), len(d) - 1))
  assert p.n == 8 and p.p_t < 0.05 and p.p_w < 0.05
  np.testing.assert_allclose(p.mean_diff, d.mean())


def test_paired_tests_edge_cases():
  same = analysis.paired_tests(A, A)
  assert (same.p_t, same.p_w) == (1.0, 1.0)
  assert math.isnan(analysis.paired_tests([1.0], [0.0]).p_t)
  with pytest.raises(ValueError, match="differ in length"):
    analysis.paired_tests(A, B[:-1])
  assert analysis.relative_gain(0.0559, 0.0503) == pytest.approx(11.13, abs=0.01)


def test_compare_pairs_on_shared_seeds_and_focus():
  records = [record(0.1, a, model="milk", seed=s) for s, a in enumerate(A)]
  records += [record(0.1, b, model="heater", seed=s + 2) for s, b in enumerate(B)]
  records += [record(0.1, 0.01, model="duif", seed=s) for s in range(8)]
  (c,) = analysis.compare(analysis.select(records), metric="ndcg@10")
  assert (c.first, c.second, c.paired.n) == ("milk", "heater", 6)   # seeds 2..7
  ref = stats.ttest_rel(A[2:], B[:6])
  np.testing.assert_allclose(c.paired.p_t, ref.pvalue)
  np.testing.assert_allclose(c.gain_pct, 100 * (np.mean(A) / np.mean(B) - 1))
  (f,) = analysis.compare(analysis.select(records), metric="ndcg@10", focus="duif")
  assert (f.first, f.second) == ("duif", "milk") and f.gain_pct < 0


# --- tables ----------------------------------------------------------------------------

SEEDS = [0, 1, 2]
MODELS = ["duif", "heater", "milk"]


def _score(c):
  return (0.05 + 0.01 * MODELS.index(c.get("model", "milk")) if c.get("model") in MODELS
          else 0.05) - 0.001 * (c.get("lr", 1e-3) > 1e-3)


# A tiny sweep per layout, shaped like the grid that layout reports.
LAYOUT_GRIDS = {
    "overview": dict(model=MODELS, setting=["fm", "mm"], lr=[1e-3, 1e-2], seed=SEEDS),
    "milk_main": dict(model=MODELS, setting=["ff", "fm", "mm"], seed=SEEDS),
    "milk_ablation": [dict(setting=["fm", "mm"], seed=SEEDS)] + [
        {switch: [0.0], "setting": ["fm", "mm"], "seed": SEEDS}
        for switch in ("use_align", "use_envs", "use_uniform_env", "cyclic", "random_mix")],
    "milk_fill": dict(model=["heater", "milk"], setting=["fm", "mm"], fill=["zero", "mean"],
                      seed=SEEDS),
    "milk_beta": dict(penalty_weight=[1.0, 10.0, 50.0, 100.0], setting=["fm", "mm"],
                      lr=[1e-3, 1e-2], seed=SEEDS),
    "milk_align": dict(align_weight=[0.05, 0.5, 1.0], seed=SEEDS),
    "milk_alpha": dict(alpha=[0.1, 1.0], setting=["fm", "mm"], seed=SEEDS),
    "i3mrec_rates": dict(model=["lightgcn", "i3mrec"], missing_rate=[0.1, 0.3, 0.5],
                         setting=["fm", "mm"], protocol=["warm"], seed=SEEDS),
    "i3mrec_main": dict(model=["lightgcn", "freedom", "i3mrec"], setting=["mm"],
                        protocol=["warm"], seed=SEEDS),
    "i3mrec_ablation": [dict(model=["i3mrec"], penalty_weight=[100.0, 300.0], seed=SEEDS),
                        dict(model=["i3mrec"], penalty_weight=[0.0], seed=SEEDS),
                        dict(model=["i3mrec"], c_max=[0.0], c_min=[0.0], seed=SEEDS)],
}


def layout_records(name: str) -> list[dict]:
  grids = LAYOUT_GRIDS[name]
  return [r for i, g in enumerate(grids if isinstance(grids, list) else [grids])
          for r in grid_records(g, score=_score, seed=i)]


def test_every_layout_has_a_tiny_sweep():
  assert set(LAYOUT_GRIDS) == set(LAYOUTS)


def _latex_rows_ok(tex: str) -> None:
  """Balanced braces and environments; every row spans the tabular's columns."""
  depth = 0
  for ch in re.sub(r"\\[{}]", "", tex):
    depth += {"{": 1, "}": -1}.get(ch, 0)
    assert depth >= 0
  assert depth == 0
  assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") >= 1
  for block in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", tex, re.S):
    spec, body = block
    n_cols = len(spec)
    for line in body.splitlines():
      if not line.endswith("\\\\"):
        continue
      spans = [int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", line)]
      cells = line[:-2].count("&") + 1
      assert cells - len(spans) + sum(spans) == n_cols, line


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_renders(name, tmp_path):
  layout, records = LAYOUTS[name], layout_records(name)
  assert layout.applies(records)
  built = tables.build_tables(records, layout)
  assert built and all(t.rows and t.entries for t in built)
  for table in built:
    md = tables.to_markdown(table)
    for row in table.rows:
      assert f"| {row} |" in md
    _latex_rows_ok(tables.to_latex(table))
  rows = list(csv.DictReader(io.StringIO(tables.to_csv(built))))
  assert len(rows) == sum(len(t.entries) for t in built)
  assert all(float(r["ci95_low"]) <= float(r["mean"]) <= float(r["ci95_high"]) for r in rows)
  md = analysis.report.write_layout(records, layout, str(tmp_path))
  assert layout.title in md
  assert os.path.exists(tmp_path / f"{name}.tex")
  assert os.path.exists(tmp_path / f"{name}.png") == bool(layout.plot)


def test_ablation_rows_and_tuned_points():
  (table,) = tables.build_tables(layout_records("i3mrec_ablation"), LAYOUTS["i3mrec_ablation"])
  assert table.rows == ("I3-MRec", "w/o invariance penalty", "w/o information bottleneck")
  points = {s.cell["variant"]: s.n_points for s in table.selections}
  # The full model searches β; the "w/o" rows fix what they switch off.
  assert points == {"I3-MRec": 2, "w/o invariance penalty": 1, "w/o information bottleneck": 1}
  (milk,) = tables.build_tables(layout_records("milk_ablation"), LAYOUTS["milk_ablation"])
  assert milk.rows[0] == "MILK" and len(milk.rows) == 6 and milk.groups == ("fm", "mm")


def test_layouts_that_do_not_apply_are_skipped():
  records = layout_records("milk_main")
  applied, skipped = analysis.report.layouts_for(records)
  assert [l.name for l in applied] == ["overview", "milk_main"] and skipped == []
  with pytest.raises(ValueError, match="unknown layouts"):
    analysis.report.layouts_for(records, ["nope"])


def test_a_named_layout_applies_only_when_its_models_are_there():
  # A warm comparison without I3-MRec, whose grid names I3-MRec's layout: no
  # "I3-MRec against ..." table, the overview instead, and why.
  warm = [r for r in layout_records("i3mrec_main") if r["coords"]["model"] != "i3mrec"]
  applied, skipped = analysis.report.layouts_for(warm, ["i3mrec_main"])
  assert [l.name for l in applied] == ["overview"]
  assert skipped == ["Layout i3mrec_main not written: it compares model 'i3mrec', which has "
                     "no runs here."]
  # Models that default to different fills (I3-MRec zero, the others mean) are not
  # a fill comparison: milk_fill needs one model with both.
  for rec in warm:
    rec["config"]["fill"] = "zero" if rec["coords"]["model"] == "freedom" else "mean"
  assert not LAYOUTS["milk_fill"].applies(warm)
  assert "within one model" in LAYOUTS["milk_fill"].why_not(warm)
  assert LAYOUTS["milk_fill"].applies(layout_records("milk_fill"))


def test_best_bold_second_underlined_and_marks():
  records = [record(0.1, a + 0.01, model="milk", seed=s) for s, a in enumerate(A)]
  records += [record(0.1, b, model="heater", seed=s) for s, b in enumerate(B)]
  records += [record(0.1, 0.001 * s, model="duif", seed=s) for s in range(8)]
  (table,) = tables.build_tables(records, LAYOUTS["milk_main"])
  md, tex = tables.to_markdown(table), tables.to_latex(table)
  assert re.search(r"\| milk \| \*\*[0-9.]+ ± [0-9.]+\*\*\\\*† \|", md)
  assert re.search(r"\| heater \| <u>[0-9.]+ ± [0-9.]+</u> \|", md)
  assert "\\textbf{" in tex and "\\underline{" in tex and "$^{*\\dagger}$" in tex
  gain = 100 * (np.mean(A) + 0.01 - np.mean(B)) / np.mean(B)
  assert f"| gain % | {gain:+.1f} |" in md
  assert f"milk: {gain:+.1f}% NDCG@20 over heater" in md


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(tmp_path):
  body = "\n".join(tables.to_latex(t) for name in sorted(LAYOUTS)
                   for t in tables.build_tables(layout_records(name), LAYOUTS[name]))
  doc = tmp_path / "tables.tex"
  doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,"
                 "landscape]{geometry}\n\\begin{document}\n" + body + "\\end{document}\n")
  run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120)
  assert run.returncode == 0, run.stdout[-3000:]


# --- the report command on a work directory as written today ---------------------------

METRIC_NAMES = [f"{m}@{k}" for m in ("recall", "ndcg", "hr") for k in (10, 20)]


def workdir_as_written_today(path) -> str:
  """results.jsonl through the sweep's own `run_records`, curves as `run_sweep` writes them."""
  from jaxrec.config import make_config
  from jaxrec.sweep import run_records
  workdir = str(path)
  os.makedirs(os.path.join(workdir, "curves"))
  for g, model in enumerate(["heater", "milk"]):
    coords = [dict(model=model, setting=s, seed=seed) for s in ("fm", "mm") for seed in SEEDS]
    configs = [make_config(**c) for c in coords]
    r = len(configs)
    score = np.arange(r) / 100 + 0.05 * g
    outcome = types.SimpleNamespace(
        selected_epoch=np.full(r, 20), epochs_trained=np.full(r, 40),
        diverged_epoch=np.zeros(r, int), val={m: score for m in METRIC_NAMES},
        test={m: score for m in METRIC_NAMES}, train_seconds=1.0, eval_seconds=0.1,
        first_epoch_seconds=0.5, resumed_from_epoch=0, compactions=[])
    name = f"g{g:03d}-{model}"
    results.append_jsonl(os.path.join(workdir, "results.jsonl"),
                         run_records(coords, configs, outcome, name))
    with open(os.path.join(workdir, "curves", f"{name}.jsonl"), "w") as f:
      for epoch in (1, 2, 3):
        f.write(json.dumps({"epoch": epoch, "loss": [1.0 / epoch] * r,
                            "bpr": [0.5 / epoch] * (r - 1) + [math.nan]}) + "\n")
  return workdir


def test_report_command_on_an_existing_workdir(tmp_path):
  workdir = workdir_as_written_today(tmp_path / "w")
  run = subprocess.run([sys.executable, "-m", "experiments.report", workdir], cwd=REPO,
                       capture_output=True, text=True, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert run.returncode == 0, run.stderr[-3000:]
  assert "## milk_main" in run.stdout and "milk: " in run.stdout
  report = os.listdir(os.path.join(workdir, "report"))
  assert {"README.md", "overview.md", "overview.csv", "overview.tex", "milk_main.tex"} <= set(
      report)
  assert os.path.exists(os.path.join(workdir, "summary.md"))        # the per-point table
  assert len(os.listdir(os.path.join(workdir, "tensorboard"))) == 2   # one folder per group
  bad = subprocess.run([sys.executable, "-m", "experiments.report", workdir,
                        "--select", "val.mrr@5"], cwd=REPO, capture_output=True, text=True,
                       timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert bad.returncode != 0 and "val metrics" in bad.stderr


def test_tensorboard_event_files_read_back(tmp_path):
  workdir = workdir_as_written_today(tmp_path / "w")
  os.makedirs(os.path.join(workdir, "eval_history"))
  with open(os.path.join(workdir, "eval_history", "g001-milk.jsonl"), "w") as f:
    for epoch in (10, 20):
      f.write(json.dumps({"epoch": epoch, "ndcg@10": [epoch / 100] * 6}) + "\n")
  with open(os.path.join(workdir, "curves", "g002-milk.jsonl"), "w") as f:   # still training
    f.write(json.dumps({"epoch": 1, "loss": [0.7, 0.6]}) + "\n")
  dirs = analysis.write_tensorboard(workdir)
  assert len(dirs) == 6 + 6 + 2
  records = results.read_jsonl(os.path.join(workdir, "results.jsonl"))
  last = records[-1]          # milk, mm, seed 2: its bpr curve went NaN and is skipped
  run_dir = os.path.join(workdir, "tensorboard", analysis.tensorboard.run_name(last))
  scalars = analysis.read_scalars(run_dir)
  assert scalars["train/loss"] == [(1, 1.0), (2, 0.5), (3, pytest.approx(1 / 3))]
  assert "train/bpr" not in scalars
  assert [step for step, _ in scalars["val/ndcg_10"]] == [10, 20]   # '@' becomes '_'
  heater = analysis.read_scalars(os.path.join(workdir, "tensorboard",
                                              analysis.tensorboard.run_name(records[0])))
  assert heater["val/ndcg_10"] == [(20, pytest.approx(0.0))]   # the selected epoch's metric
  running = analysis.read_scalars(os.path.join(workdir, "tensorboard", "g002-milk", "run001"))
  assert running["train/loss"] == [(1, pytest.approx(0.6))]
  analysis.write_tensorboard(workdir)       # rebuilt, not appended to
  assert len(analysis.read_scalars(run_dir)["train/loss"]) == 3


def test_a_report_can_join_the_runs_of_several_work_directories(tmp_path):
  records = layout_records("milk_main")
  heater = [r for r in records if r["coords"]["model"] == "heater"]
  others = [r for r in records if r["coords"]["model"] != "heater"]
  first, second = str(tmp_path / "a"), str(tmp_path / "b")
  for workdir, part in ((first, others), (second, heater + others[:2])):  # 2 runs in both
    os.makedirs(workdir)
    results.append_jsonl(os.path.join(workdir, "results.jsonl"), part)
  joined = analysis.report.combined_records([first, second])
  assert sorted(r["run_id"] for r in joined) == sorted(r["run_id"] for r in records)
  whole = str(tmp_path / "whole")
  os.makedirs(whole)
  results.append_jsonl(os.path.join(whole, "results.jsonl"), records)
  body = lambda md: md[md.index("## milk_main"):]       # the tables, not what they rest on
  md = analysis.report.write_reports(first, layouts=["milk_main"], tensorboard=False,
                                     also=[second])
  assert f"with the runs of {second}" in md.split("\n", 1)[0]
  assert body(md) == body(analysis.report.write_reports(whole, layouts=["milk_main"],
                                                        tensorboard=False))
  changed = dict(others[0], test={**others[0]["test"], "recall@20": 0.9})
  results.append_jsonl(os.path.join(second, "results.jsonl"), [changed])
  with pytest.raises(ValueError, match="other results"):
    analysis.report.combined_records([first, second])


def test_runs_with_a_mechanism_off_are_a_variant_row_not_a_point(tmp_path):
  # An ablation work directory (MILK at β = 0, set for the whole sweep, so in no run's
  # coordinates) joined with `--also`: its runs are best on validation, and before
  # they silently became the "milk" row.
  full = [record(0.20 + 0.01 * s, 0.10, model="milk", seed=s) for s in SEEDS]
  ablated = [record(0.30 + 0.01 * s, 0.30, model="milk", seed=s, penalty_weight=0.0)
             for s in SEEDS]
  for r in ablated:
    del r["coords"]["penalty_weight"]
  heater = [record(0.25, 0.20, model="heater", seed=s) for s in SEEDS]
  first, second = str(tmp_path / "main"), str(tmp_path / "ablation")
  for workdir, part in ((first, full + heater), (second, ablated)):
    os.makedirs(workdir)
    results.append_jsonl(os.path.join(workdir, "results.jsonl"), part)
  md = analysis.report.write_reports(first, layouts=["milk_main"], tensorboard=False,
                                     also=[second])
  table_md = md.split("### Chosen points")[0]
  rows = {line.split(" | ")[0][2:]: line for line in table_md.splitlines()
          if line.startswith("| milk")}
  assert set(rows) == {"milk", "milk (penalty_weight=0)"}
  assert "0.1000 ± 0.0000" in rows["milk"] and "**0.3000 ± 0.0000**" in rows[
      "milk (penalty_weight=0)"]
  (table,) = tables.build_tables(full + ablated + heater, LAYOUTS["milk_main"])
  assert table.rows == ("heater", "milk (penalty_weight=0)", "milk")
  chosen = {s.cell["model"]: s for s in table.selections}
  assert [r["config"]["penalty_weight"] for r in chosen["milk"].runs] == [50.0] * len(SEEDS)
  assert chosen["milk (penalty_weight=0)"].n_points == 1
  # A searched β with 0 among its values: the 0 runs leave the row, and the point
  # does not repeat what the row's name says.
  searched = [record(0.2, 0.1, model="milk", seed=s, penalty_weight=b)
              for s in SEEDS for b in (0.0, 50.0)]
  sels = analysis.choose(searched)
  assert {s.cell["model"]: s.point for s in sels} == {
      "milk": {"penalty_weight": 50.0}, "milk (penalty_weight=0)": {}}
  # Where a cell axis shows the field (a β sensitivity row, an ablation layout's
  # "w/o" row), the runs stay the model's.
  (beta,) = tables.build_tables(searched, LAYOUTS["milk_beta"])
  assert beta.rows == ("0", "50") and {s.cell["model"] for s in beta.selections} == {"milk"}
  switched = [record(0.2, 0.1, model="milk", seed=s, use_envs=0.0, use_align=0.0)
              for s in SEEDS]
  assert {s.cell["model"] for s in analysis.choose(switched)} == {
      "milk (use_envs=0, use_align=0)"}


# --- what a number rests on (issue 25) ---------------------------------------------------

BUDGET = dict(max_epochs=1000, eval_every=10, patience=3)


def trained(rec: dict, *, selected: int, stopped: int, **budget) -> dict:
  """`rec` with a training history: selected epoch, last epoch, and its budget."""
  rec["config"] = {**rec["config"], **BUDGET, **budget}
  return {**rec, "selected_epoch": selected, "epochs_trained": stopped}


def two_models(milk_history: dict, heater_history: dict | None = None) -> list[dict]:
  """milk clearly above heater over 8 paired seeds (A + 0.01 against B)."""
  heater_history = heater_history or dict(selected=40, stopped=70)
  return ([trained(record(0.1, a + 0.01, model="milk", seed=s), **milk_history)
           for s, a in enumerate(A)]
          + [trained(record(0.1, b, model="heater", seed=s), **heater_history)
             for s, b in enumerate(B)])


def only_table(records, layout="milk_main") -> tables.Table:
  (table,) = tables.build_tables(records, LAYOUTS[layout])
  return table


def test_under_trained_means_the_stopping_rule_did_not_stop_the_run():
  under = lambda **h: analysis.evidence.under_trained(trained(record(0.1, 0.1), **h))
  assert not under(selected=40, stopped=70)                  # 3 evaluations without gain
  assert under(selected=70, stopped=70, max_epochs=70)       # still improving at the ceiling
  assert under(selected=50, stopped=70, max_epochs=70)       # 2 evaluations: rule not done
  assert not under(selected=40, stopped=70, max_epochs=70)   # the rule and the ceiling agree
  diverged = trained(record(0.1, 0.1, diverged=5), selected=4, stopped=5, max_epochs=5)
  assert not analysis.evidence.under_trained(diverged)       # counted as diverged instead


def test_a_planted_under_trained_cell_is_marked_and_its_significance_withheld():
  converged = only_table(two_models(dict(selected=40, stopped=70)))
  assert converged.entries[("milk", "fm", "recall@20")].marks == "*†"
  assert converged.entries[("milk", "fm", "recall@20")].flags == ""
  assert converged.verdicts[0].startswith(
      "milk beats every other model (fm, Recall@20): holds (milk +")
  table = only_table(two_models(dict(selected=40, stopped=40, max_epochs=40)))
  entry = table.entries[("milk", "fm", "recall@20")]
  assert (entry.marks, entry.flags) == ("", "u")
  assert table.entries[("heater", "fm", "recall@20")].flags == ""
  md = tables.to_markdown(table)
  assert "| milk | **" in md and "**<sup>u</sup> |" in md and "\\*" not in md
  assert "significance withheld: milk under-trained (8 of 8 runs" in md
  assert "under-trained: runs the stopping rule did not stop" in md and "milk 8 of 8" in md
  assert table.verdicts[0] == (
      "milk beats every other model (fm, Recall@20): undecided (milk under-trained (8 of 8 "
      "runs not stopped by the stopping rule))")
  assert "$^{\\mathrm{u}}$" in tables.to_latex(table)


def with_reference(records, scores: dict) -> list[dict]:
  for rec in records:
    rec["reference"] = {name: {"recall@20": v, "ndcg@20": v / 2} for name, v in scores.items()}
  return records


def test_a_cell_at_the_reference_level_is_marked_and_gets_no_verdict():
  floor = float(np.mean(A)) * 2 + 0.02          # milk's recall@20 is 2 * (A + 0.01)
  table = only_table(with_reference(two_models(dict(selected=40, stopped=70)),
                                    {"random": 0.01, "content_popularity": floor / 1.05}))
  entry = table.entries[("milk", "fm", "recall@20")]
  assert (entry.marks, entry.flags) == ("", "r")
  assert "not above the content_popularity scorer by 10%" in table.verdicts[0]
  assert table.verdicts[0].startswith("milk beats every other model (fm, Recall@20): undecided")
  clear = only_table(with_reference(two_models(dict(selected=40, stopped=70)),
                                    {"random": 0.01, "content_popularity": 0.02}))
  assert clear.entries[("milk", "fm", "recall@20")].flags == ""
  assert ": holds (" in clear.verdicts[0]


def test_verdicts_hold_do_not_hold_or_are_undecided():
  history = dict(selected=40, stopped=70)
  holds = only_table(two_models(history))
  below = [dict(r, test={k: 0.2 - v for k, v in r["test"].items()})
           for r in two_models(history)]           # milk now below heater on every seed
  noise = [trained(record(0.1, 0.05 + 0.001 * ((s * 7) % 5), model=m, seed=s), **history)
           for m in ("milk", "heater") for s in range(6)]
  assert ": holds (milk +" in holds.verdicts[0]
  assert ": does not hold (milk -" in only_table(below).verdicts[0]
  assert ": undecided (within seed noise: milk +0.0% against heater" in \
      only_table(noise).verdicts[0]
  one_seed = [r for r in two_models(history) if r["coords"]["seed"] == 0]
  assert "undecided (only 1 paired seed(s), no test)" in only_table(one_seed).verdicts[0]
  assert only_table(two_models(history), "overview").verdicts == ()   # no claim there


def test_a_choice_at_the_edge_of_its_search_is_marked():
  def runs(best_lr):
    return [record(0.3 if lr == best_lr else 0.2, 0.1, lr=lr, seed=s)
                   for lr in (1e-3, 1e-2, 1e-1) for s in range(3)]
  edge = only_table(runs(1e-1), "overview")
  assert edge.entries[("milk", "fm", "ndcg@20")].flags == "e"
  assert "chosen at the edge of its searched range" in tables.to_markdown(edge)
  assert "lr=0.1 of 0.001..0.1" in tables.to_markdown(edge)
  assert only_table(runs(1e-2), "overview").entries[("milk", "fm", "ndcg@20")].flags == ""


def fake_records(workdir: str, configs, coords) -> None:
  from jaxrec.sweep import run_records
  r = len(configs)
  score = np.linspace(0.1, 0.2, r)
  outcome = types.SimpleNamespace(
      selected_epoch=np.full(r, 20), epochs_trained=np.full(r, 50),
      diverged_epoch=np.zeros(r, int), val={m: score for m in METRIC_NAMES},
      test={m: score for m in METRIC_NAMES}, train_seconds=1.0, eval_seconds=0.1,
      first_epoch_seconds=0.5, resumed_from_epoch=0, compactions=[])
  results.append_jsonl(os.path.join(workdir, "results.jsonl"),
                       run_records(coords, configs, outcome, "g000"))


def grid_workdir(path, grid, keep) -> str:
  """A work directory of `grid` (sweep.json) holding the runs for which `keep(coords)`."""
  from jaxrec.workdir import WorkDir
  workdir = str(path)
  WorkDir(workdir).create(grid.to_json(), {"synthetic": {}})
  runs = [(c, cfg) for c, cfg in grid.expand() if keep(c)]
  fake_records(workdir, [cfg for _, cfg in runs], [c for c, _ in runs])
  return workdir


def test_a_partial_work_directory_names_its_missing_runs(tmp_path):
  from jaxrec.grid import Grid
  grid = Grid(base=dict(protocol="new_item", setting="fm", missing_rate=None, **BUDGET),
              axes=dict(model=["heater", "milk"], seed=[0, 1, 2]))
  workdir = grid_workdir(tmp_path / "w", grid,
                         lambda c: c["model"] == "heater" or c["seed"] == 0)
  md = analysis.write_reports(workdir, tensorboard=False)
  assert f"{workdir}: 2 of 3 runs of milk missing (seed=1; seed=2)." in md
  assert "runs of heater" not in md
  assert "milk beats every other model (fm, Recall@20): undecided (runs of milk missing)" in md
  whole = grid_workdir(tmp_path / "whole", grid, lambda c: True)
  md = analysis.write_reports(whole, tensorboard=False)
  assert f"{whole}: all 6 runs of its grid are here." in md and "runs of milk missing" not in md
  # A competitor with no run at all: MILK beating the models that ran decides nothing.
  grid = Grid(base=dict(protocol="new_item", setting="fm", missing_rate=None, **BUDGET),
              axes=dict(model=["duif", "heater", "milk"], seed=[0, 1, 2]))
  absent = grid_workdir(tmp_path / "absent", grid, lambda c: c["model"] != "duif")
  md = analysis.write_reports(absent, tensorboard=False)
  assert f"{absent}: 3 of 3 runs of duif missing" in md
  assert "milk beats every other model (fm, Recall@20): undecided (runs of duif missing)" in md


def test_missing_competitors_cannot_undo_a_significant_deficit():
  """A claim over every other model fails on one: MILK significantly below Heater,
  both complete, does not hold whatever DUIF (no runs yet) scores; a lead waits."""
  history = dict(selected=40, stopped=70)
  below = [dict(r, test={k: 0.2 - v for k, v in r["test"].items()})
           for r in two_models(history)]
  verdict = lambda records, missing: tables.build_tables(
      records, LAYOUTS["milk_main"], missing=frozenset(missing))[0].verdicts[0]
  assert ": does not hold (milk -" in verdict(below, {"duif"})
  assert verdict(below, {"duif"}).endswith(
      "; runs of duif missing: they cannot turn a deficit into a lead)")
  assert ": undecided (runs of duif missing)" in verdict(two_models(history), {"duif"})
  # Runs of either compared model still to come: the deficit itself may change.
  assert ": undecided (runs of heater missing)" in verdict(below, {"heater"})
  assert ": undecided (runs of milk missing)" in verdict(below, {"milk"})
  # The table's marks stay withheld until the grid is complete.
  (table,) = tables.build_tables(below, LAYOUTS["milk_main"], missing=frozenset({"duif"}))
  assert table.entries[("milk", "fm", "recall@20")].marks == ""


def test_a_field_searched_per_model_is_named_once_in_the_chosen_point():
  """`--axis milk.lr=...` sets the config's `lr`: the point is `milk.lr`, not both."""
  records = [record(0.3 + 0.01 * s + (0.05 if lr == 5e-3 else 0.0), 0.1, model="milk", lr=lr,
                    seed=s) for lr in (1e-3, 5e-3) for s in range(3)]
  for rec in records:
    rec["coords"]["milk.lr"] = rec["coords"].pop("lr")
  (sel,) = choose(records)
  assert sel.point == {"milk.lr": 5e-3}


def test_the_end_of_sweep_table_never_stars_a_test_best_point_validation_did_not_choose(
    tmp_path):
  # planted(): lr 1e-3 is best on validation (test ndcg@10 0.10); lr 1e-1 is best on
  # test (0.50), lr 1e-2 in between (0.40).
  workdir = str(tmp_path)
  results.append_jsonl(os.path.join(workdir, "results.jsonl"), planted())
  md = analysis.write_reports(workdir, tensorboard=False)
  assert "**" not in md.split("## overview")[1].split("### Chosen points")[0]  # one row
  assert "0.1000 ± 0.0000" in md and "0.5000" not in md and "0.4000" not in md
  summary = open(os.path.join(workdir, "summary.md")).read()
  assert "0.5000 ± 0.0000" in summary and "*" not in summary     # every point, unranked
  assert "chosen on validation in report/README.md" in summary


def test_a_one_model_sweep_gets_one_table_and_a_rate_plot_only_over_rates(tmp_path):
  records = grid_records(dict(missing_rate=[0.0, 0.5, 0.9], setting=["fm", "mm"], seed=SEEDS),
                         score=lambda c: 0.3 - 0.1 * c["missing_rate"])
  (table,) = tables.build_tables(records, LAYOUTS["overview"])
  assert table.row_axis == "missing_rate" and table.rows == ("0", "0.5", "0.9")
  assert table.groups == ("fm", "mm") and "(model=milk)" in table.title
  for rec in records:
    rec["config"]["missing_rate"] = rec["coords"]["missing_rate"]
  rates, one_rate = str(tmp_path / "rates"), str(tmp_path / "one")
  for workdir, recs in ((rates, records), (one_rate, [r for r in records
                                                       if r["coords"]["missing_rate"] == 0.5])):
    os.makedirs(workdir)
    results.append_jsonl(os.path.join(workdir, "results.jsonl"), recs)
    analysis.write_reports(workdir, tensorboard=False)
  assert os.path.exists(os.path.join(rates, "plots", "metrics_vs_rate.png"))
  assert not os.path.exists(os.path.join(one_rate, "plots", "metrics_vs_rate.png"))


def test_curve_plots_label_each_run_by_its_coordinates(tmp_path):
  workdir = workdir_as_written_today(tmp_path / "w")
  runs = [r for r in results.read_jsonl(os.path.join(workdir, "results.jsonl"))
          if r["group"] == "g001-milk"]
  assert analysis.report.run_labels(runs) == [
      f"{s} · seed={seed}" for s in ("fm", "mm") for seed in SEEDS]
  written = analysis.report.write_plots(workdir, runs)
  assert os.path.join(workdir, "plots", "curves-g001-milk.png") in written


def test_joined_work_directories_say_how_their_budgets_differ(tmp_path):
  records = layout_records("milk_main")
  first, second = str(tmp_path / "a"), str(tmp_path / "b")
  for workdir, model, ceiling in ((first, "milk", 1000), (second, "heater", 60)):
    os.makedirs(workdir)
    part = [trained(r, selected=20, stopped=50, max_epochs=ceiling) for r in records
            if r["coords"]["model"] == model]
    results.append_jsonl(os.path.join(workdir, "results.jsonl"), part)
  md = analysis.write_reports(first, tensorboard=False, also=[second])
  assert (f"The joined work directories differ in max_epochs (budget): {first}: 1000; "
          f"{second}: 60.") in md
  assert "differ in eval_every" not in md


TINY = dict(synthetic_users=150, synthetic_items=200, synthetic_dims=(8, 6), embed_dim=8,
            batch_size=128, protocol="new_item", setting="fm", missing_rate=None)


def test_a_five_epoch_sweep_gets_no_significance_marks_and_says_why(tmp_path, capsys):
  from jaxrec.grid import Grid
  from jaxrec.sweep import run_sweep
  grid = Grid(base=dict(TINY, max_epochs=5, eval_every=5, patience=3),
              axes=dict(model=["duif", "milk"], seed=[0, 1, 2]))
  workdir = str(tmp_path / "w")
  records = run_sweep(grid, workdir, progress=False)
  printed = capsys.readouterr().out
  assert all(set(r["reference"]) == {"random", "content_popularity"} for r in records)
  assert all(0 < r["reference"]["random"]["recall@20"] < 1 for r in records)
  # Every run selected its one evaluation at the 5-epoch ceiling: under-trained.
  assert all(analysis.evidence.under_trained(r) for r in records)
  assert "## milk_main" in printed and "## overview" in printed     # the report is printed
  rows = [line for line in printed.splitlines() if line.startswith("| ")]
  assert rows and not any("\\*" in line or "†" in line for line in rows)   # no marks
  assert "significance withheld: duif under-trained (3 of 3 runs" in printed
  assert "(6 of them stopped at 5 epochs before the rule could stop them: 5 epochs was " \
         "their cap)" in printed
  assert re.search(r"milk beats every other model \(fm, Recall@20\): undecided \(.*"
                   r"under-trained", printed)
  assert open(os.path.join(workdir, "report", "README.md")).read() in printed


def test_runs_recorded_elsewhere_are_taken_on_the_same_data_wherever_it_lives(tmp_path):
  from jaxrec.config import make_config
  from jaxrec.workdir import WorkDir
  source = str(tmp_path / "results" / "table")
  os.makedirs(source)
  old = [make_config(model="milk", data="/old/place/tiktok", seed=s) for s in range(3)]
  fake_records(source, old, [dict(seed=s) for s in range(3)])
  hashes = {"interactions.csv": "aa", "image.npy": "bb"}
  with open(os.path.join(source, "sweep.json"), "w") as f:
    json.dump({"base": {}, "axes": {}, "data_files": {"/old/place/tiktok": hashes}}, f)
  # This grid names one more axis than the source did: the taken records carry its coordinates.
  here = [(dict(seed=s, lr=1e-3), make_config(model="milk", data="/new/place/tiktok", seed=s))
          for s in range(4)]
  work = WorkDir(str(tmp_path / "w"))
  os.makedirs(work.path)
  changed = {**hashes, "image.npy": "cc"}
  assert work.import_finished([source], here, {"/new/place/tiktok": changed}) == 0
  assert work.import_finished([source], here, {"/new/place/tiktok": hashes}) == 3
  taken = work.records()
  assert sorted(r["run_id"] for r in taken) == sorted(c.run_id for _, c in here[:3])
  assert all(r["config"]["data"] == "/new/place/tiktok" and r["imported_from"] == source
             for r in taken)
  assert sorted((r["coords"]["seed"], r["coords"]["lr"]) for r in taken) == [
      (0, 1e-3), (1, 1e-3), (2, 1e-3)]
  assert work.import_finished([source], here, {"/new/place/tiktok": hashes}) == 0  # done


def test_a_table_is_saved_rebuilt_without_training_and_finished_from_its_records(tmp_path):
  from jaxrec.grid import Grid
  from jaxrec.sweep import run_sweep
  from jaxrec.workdir import save_records
  grid = Grid(base=dict(TINY, model="milk", max_epochs=2, eval_every=1),
              axes=dict(seed=[0, 1, 2]))
  first = str(tmp_path / "session1")
  expanded = grid.expand()
  from jaxrec.workdir import WorkDir
  WorkDir(first).create(grid.to_json(), {"synthetic": {}})
  WorkDir(first).log_command(["python", "-m", "experiments.sweep", "--seeds", "3"])
  fake_records(first, [c for _, c in expanded[:2]], [c for c, _ in expanded[:2]])
  table = str(tmp_path / "results" / "tiny")
  written = save_records(first, table)
  assert sorted(os.path.basename(p) for p in written) == [
      "commands.jsonl", "results.jsonl", "sweep.json"]
  command = results.read_jsonl(os.path.join(table, "commands.jsonl"))[0]
  assert command["command"].endswith("--seeds 3") and "commit" in command
  run = subprocess.run([sys.executable, "-m", "experiments.report", table, "--notensorboard"],
                       cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "JAX_PLATFORMS": "cpu"})
  assert run.returncode == 0, run.stderr[-3000:]
  assert f"{table}: 1 of 3 runs of milk missing (seed=2)." in run.stdout
  # Joined without training (--notrain): the two records, the third run named as missing.
  joined = str(tmp_path / "joined")
  records = run_sweep(grid, joined, progress=False, done=[table], train=False)
  assert len(records) == 2 and not os.path.exists(os.path.join(joined, "checkpoints"))
  with open(os.path.join(joined, "report", "README.md")) as f:
    assert f"{joined}: 1 of 3 runs of milk missing (seed=2)." in f.read()
  # A second session finishes the table: two runs taken, one trained.
  second = str(tmp_path / "session2")
  records = run_sweep(grid, second, progress=False, done=[table])
  assert len(records) == 3 and sum("imported_from" in r for r in records) == 2
  save_records(second, table)
  assert len(results.read_jsonl(os.path.join(table, "results.jsonl"))) == 3
  assert len(results.read_jsonl(os.path.join(table, "commands.jsonl"))) == 2
