"""MILK at the paper's missing settings (fm: 50% of new items miss one modality;
mm: also 30% of warm items), 5 seeds, TikTok hyper-parameters (β = 50, λ_align = 0.5).

Run:     python -m experiments.sweep --grid milk_paper --data ../shared/data/tiktok-diffmm
Expect:  10 runs in one group; on 2 CPU cores about 10-20 minutes. Test Recall@20 on
         the 1,342 TikTok new items about 0.05 (see BUILD_NOTES.md for the measured
         numbers; a random ranking gets about 0.015).
Data:    any folder in a layout of PROTOCOL.md (--data PATH); synthetic by default.
"""
from jaxrec.grid import Grid


def get_config() -> Grid:
  return Grid(
      base=dict(model="milk", protocol="new_item", missing_rate=None,
                penalty_weight=50.0, align_weight=0.5, alpha=0.1,
                max_epochs=1000, eval_every=10, patience=3),
      axes=dict(setting=["fm", "mm"], seed=[0, 1, 2, 3, 4]))
