"""Missing modalities cost MILK: hiding one modality of every new item lowers its
new-item ranking (that it learns at all is tests/test_every_model.py's)."""

from jaxrec.config import make_config
from jaxrec.sweep import train_configs

CFG = dict(synthetic_users=600, synthetic_items=500, synthetic_dims=(24, 16),
           embed_dim=32, batch_size=512, max_epochs=20, eval_every=5)


def test_missing_modalities_hurt_milk():
  base = CFG
  full = train_configs([make_config(**base, seed=0, setting="ff")])
  missing = train_configs([make_config(**base, seed=0, setting="fm", missing_rate=1.0,
                                       fill="zero")])
  assert missing.test["recall@20"][0] < full.test["recall@20"][0] - 0.02
