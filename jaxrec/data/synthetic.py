"""Seeded synthetic multimodal data with a planted preference signal.

Users and items have latent factors; a user's interactions are drawn without
replacement with probability rising with `<user, item>` plus an item popularity
term. Each modality sees a *shared* block of the item factors plus a block of
its own, mixed by a random linear map and corrupted by modality-specific noise:
content predicts interactions, modalities are partly redundant, and losing a
modality loses its own block, which measurably hurts.
"""
from __future__ import annotations

import numpy as np

from jaxrec.data.dataset import Dataset


# Named as real data's modalities, so a model option that names one (FREEDOM's
# and MMGCN's "image") finds it here too.
NAMED = ("image", "text", "audio")


def synthetic_names(n_modalities: int) -> tuple[str, ...]:
  """image, text, audio, then mod3, mod4, ..."""
  return tuple(NAMED[m] if m < len(NAMED) else f"mod{m}" for m in range(n_modalities))


def make_synthetic(*, n_users: int = 1200, n_items: int = 1000,
                   feature_dims: tuple[int, ...] = (48, 32),
                   latent_dim: int = 16, interactions_per_user: float = 25.0,
                   shared_fraction: float = 0.5, noise: float = 0.3,
                   sharpness: float = 2.5, popularity: float = 0.5,
                   seed: int = 0) -> Dataset:
  """Generates a `Dataset` (see module docstring).

  Args:
    n_users, n_items: sizes.
    feature_dims: one width per modality (M = len(feature_dims) >= 1).
    latent_dim: size of the planted factors.
    interactions_per_user: mean of the per-user count (Poisson, at least 3).
    shared_fraction: share of the latent factors every modality sees.
    noise: std of the modality-specific noise relative to the signal.
    sharpness: inverse temperature of the preference signal.
    popularity: weight of a per-item popularity term (not in the content).
    seed: everything is a deterministic function of the arguments.
  """
  rng = np.random.default_rng(seed)
  n_modalities = len(feature_dims)
  user_f = rng.standard_normal((n_users, latent_dim))
  item_f = rng.standard_normal((n_items, latent_dim))
  item_pop = popularity * rng.standard_normal(n_items)

  n_shared = int(round(shared_fraction * latent_dim))
  own_blocks = np.array_split(np.arange(n_shared, latent_dim), n_modalities)
  features = []
  for m, width in enumerate(feature_dims):
    visible = np.zeros(latent_dim)
    visible[:n_shared] = 1.0
    visible[own_blocks[m]] = 1.0
    mixing = rng.standard_normal((latent_dim, width)) / np.sqrt(latent_dim)
    signal = (item_f * visible) @ mixing
    scale = signal.std()
    features.append((signal + noise * scale * rng.standard_normal(signal.shape))
                    .astype(np.float32))

  counts = np.clip(rng.poisson(interactions_per_user, n_users), 3, n_items // 2)
  pairs = []
  chunk = 1024
  for start in range(0, n_users, chunk):
    stop = min(start + chunk, n_users)
    logits = sharpness * user_f[start:stop] @ item_f.T / np.sqrt(latent_dim)
    logits += item_pop[None, :]
    logits += rng.gumbel(size=logits.shape)
    order = np.argsort(-logits, axis=1)
    for row, user in enumerate(range(start, stop)):
      items = order[row, :counts[user]]
      pairs.append(np.stack([np.full_like(items, user), items], axis=1))
  pairs = np.concatenate(pairs).astype(np.int32)
  pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
  return Dataset(
      name="synthetic", n_users=n_users, n_items=n_items, pairs=pairs,
      features=tuple(features),
      modality_names=synthetic_names(n_modalities),
      available=np.ones((n_items, n_modalities), bool))
