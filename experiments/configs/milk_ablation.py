"""MILK's ablation (its paper's Table): the full model and each part removed, fm and mm.

Rows: MILK, w/o alignment, w/o environments, w/o e=0, w/o cyclic shift, w/o random mixing
(jaxrec.analysis.layouts.MILK_ABLATION, the same bundles the report reads back). Every
variant is a per-run switch, so the whole grid is one compiled group of 6 x 2 x 10 runs.
TikTok hyper-parameters (β = 50, λ_align = 0.5, α = 0.1), 10 seeds.

Run:     python -m experiments.sweep --grid milk_ablation --data ../shared/data/tiktok-diffmm
Report:  WORKDIR/report/milk_ablation.{md,tex,csv}: test mean ± std, 95% intervals, paired
         t-test / Wilcoxon of each row against the full model.
Measured (2-core CPU, --epochs 50, 2026-12-02; BUILD_NOTES.md "MILK ablation on TikTok"):
         57 min for the 120 runs; MILK fm Recall@20 0.0447 ± 0.0065, NDCG@20 0.0186; every
         "w/o" row within 5% of it; w/o random mixing slightly above it (NDCG@20 p = 0.002).
"""
from jaxrec.analysis.layouts import MILK_ABLATION
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(model="milk", protocol="new_item", missing_rate=None, penalty_weight=50.0,
                align_weight=0.5, alpha=0.1, max_epochs=1000, eval_every=10, patience=3),
      axes=dict(setting=["fm", "mm"], seed=list(range(10))),
      variants={MILK_ABLATION.name: MILK_ABLATION.options},
      layouts=("milk_ablation",))
