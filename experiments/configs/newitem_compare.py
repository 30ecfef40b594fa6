"""Every new-item baseline and MILK side by side: fm and mm settings, 5 seeds.

The TikTok table of issue 5. Each baseline keeps its own defaults (sources in
BUILD_NOTES.md, "Baselines"); MILK uses its TikTok hyper-parameters (β = 50,
λ_align = 0.5), given per model so they do not leak into the baselines (Heater,
for one, reads `align_weight` too).

Run:     python -m experiments.sweep --grid newitem_compare --data ../shared/data/tiktok-diffmm
Expect:  7 groups (one per model) of 10 runs; summary.md has one row per model and
         setting with the best value per column marked. On 2 CPU cores with --epochs 200
         the groups took DUIF 14, DropoutNet 29, MTPR 3, Heater 32 min of training, and
         CLCRec ~10-19 s per epoch: several hours in all (see BUILD_NOTES.md).
"""
from jaxrec.sweep import Grid

MODELS = ["duif", "dropoutnet", "mtpr", "heater", "clcrec", "gar", "milk"]


def get_config() -> Grid:
  return Grid(
      base=dict(protocol="new_item", missing_rate=None, max_epochs=1000, eval_every=10,
                patience=3),
      axes=dict(model=MODELS, setting=["fm", "mm"], seed=[0, 1, 2, 3, 4]),
      per_model=dict(milk=dict(penalty_weight=50.0, align_weight=0.5, alpha=0.1)))
