"""MILK tuned against its strongest new-item baselines on TikTok (DUIF and MTPR, issue 5's
table), fm and mm, 10 seeds; small search spaces so the grid fits a 2-core CPU in under an
hour at --epochs 50: MILK β ∈ {10, 50, 200} × lr ∈ {1e-3, 1e-2} (λ_align 0.5, α 0.1), DUIF
lr ∈ {1e-3, 1e-2}, MTPR lr ∈ {1e-2, 0.05}: every model searches the same learning rates' range
(a search that tunes the baselines' rates and not MILK's decides the comparison by the rate at a
capped budget); the report chooses each model's point per setting on validation.

Run:     python -m experiments.sweep --grid milk_strongest --data ../shared/data/tiktok-diffmm
Report:  WORKDIR/report/milk_main.{md,tex,csv}: MILK against the strongest baseline, paired
         t-test / Wilcoxon over the 10 seeds, gain in %.
Measured (2-core CPU, --epochs 50, 2026-12-02; BUILD_NOTES.md "MILK against its strongest
         baselines", before milk.lr was searched): 27 min for 140 runs; DUIF (lr 1e-2) above MILK by 18% NDCG@20 on fm
         (p < 0.005), with every MILK run still improving at the cap.
"""
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(protocol="new_item", missing_rate=None, max_epochs=1000, eval_every=10,
                patience=3),
      axes={"model": ["duif", "mtpr", "milk"], "setting": ["fm", "mm"],
            "seed": list(range(10)), "milk.penalty_weight": [10.0, 50.0, 200.0],
            "milk.lr": [1e-3, 1e-2],
            "duif.lr": [1e-3, 1e-2], "mtpr.lr": [1e-2, 0.05]},
      per_model=dict(milk=dict(align_weight=0.5, alpha=0.1)),
      layouts=("milk_main", "overview"))
