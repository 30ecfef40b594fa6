"""Every new-item baseline and MILK side by side: fm and mm settings, 5 seeds.

The TikTok table of issue 5. Each baseline keeps its own defaults (sources in
BUILD_NOTES.md, "Baselines"); MILK uses its TikTok hyper-parameters (β = 50,
λ_align = 0.5), given per model so they do not leak into the baselines (Heater,
for one, reads `align_weight` too).

Run:     python -m experiments.sweep --grid newitem_compare --data ../shared/data/tiktok-diffmm
Expect:  9 groups (one per model) of 10 runs; summary.md has one row per model and
         setting with the best value per column marked. Measured before CCFCRec and GoRec
         were added (7 groups): on 2 CPU cores with --epochs 200 the groups took DUIF 14,
         DropoutNet 29, MTPR 3, Heater 32, CLCRec 45, GAR 14 and MILK 11 min of training,
         about 2 h 34 min in all (table in BUILD_NOTES.md); CCFCRec (~8-11 s per run-epoch)
         and GoRec (~5 s) add roughly 3 h more there. MILK leads every column (TikTok
         Recall@20 ~0.055); GAR is at random level there (known problem, BUILD_NOTES.md).
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
