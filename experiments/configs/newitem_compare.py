"""Every new-item baseline and MILK side by side: fm and mm settings, 5 seeds.

The TikTok table of issue 5. Each baseline keeps its own defaults (sources in
BUILD_NOTES.md, "Baselines"); MILK uses its TikTok hyper-parameters (β = 50,
λ_align = 0.5), given per model so they do not leak into the baselines (Heater,
for one, reads `align_weight` too).

Run:     python -m experiments.sweep --grid newitem_compare --data ../shared/data/tiktok-diffmm
Expect:  11 groups (one per model) of 10 runs; report/milk_main.md has one row per model and
         setting with the best value per column marked and MILK against the strongest baseline.
         Measured (BUILD_NOTES.md, "MILK's whole new-item comparison on TikTok"): 3 seeds, 30-epoch
         cap (MICRO 6), about 2 h 11 min on 2 shared CPU cores; Heater and MTPR lead there, MILK
         within their spread (not significant at 3 seeds); CCFCRec (~3,300 s per 6-run group) and
         MICRO (~50 s per run-epoch) are the expensive groups on a CPU.
"""
from jaxrec.grid import Grid

MODELS = ["duif", "dropoutnet", "mtpr", "heater", "clcrec", "gar", "gar_scaled", "ccfcrec",
          "gorec", "micro", "milk"]


def get_config() -> Grid:
  return Grid(
      base=dict(protocol="new_item", missing_rate=None, max_epochs=1000, eval_every=10,
                patience=3),
      axes=dict(model=MODELS, setting=["fm", "mm"], seed=[0, 1, 2, 3, 4]),
      per_model=dict(milk=dict(penalty_weight=50.0, align_weight=0.5, alpha=0.1),
                     # The authors' GAR validates every epoch, patience 10 (main.py);
                     # GoRec every epoch, early stop after 15 (their main script).
                     gar=dict(eval_every=1, patience=10),
                     gar_scaled=dict(eval_every=1, patience=10),
                     gorec=dict(eval_every=1, patience=15)))
