"""Item content as the graph models read it: per modality the (optionally
fine-tuned) filled features and their linear map to the embedding (the authors'
`*_trs`), as in MMRec's FREEDOM, BM3, LATTICE, MGCN and MICRO.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec.models.layers import apply_linear, linear


def content_params(key, spec, train_features: bool) -> dict:
  """Per modality a linear map to the embedding (`trs`) and, where the authors
  fine-tune the raw features (`nn.Embedding.from_pretrained(freeze=False)`), a
  per-item offset `delta` (I, d_m), zero at init.

  Training `x + delta` from delta = 0 is training x from its start: Adam (no
  weight decay) moves a parameter by its gradient alone, and the gradients are
  the same. The offset keeps the run's own filled features the start point
  without copying them into the parameters at `init`.

  [D] A row the run's mask hides is not fine-tuned (`content` adds no offset
  there): the authors' data has no missing rows; here a missing row stays the
  fill, the same for every item, and a row hidden only at evaluation drops
  the offset it learned while observed.
  """
  keys = jax.random.split(key, spec.n_modalities)
  out = {"trs": [linear(k, d, spec.embed_dim)
                 for k, d in zip(keys, spec.feature_dims)]}
  if train_features:
    out["delta"] = [jnp.zeros((spec.n_items, d)) for d in spec.feature_dims]
  return out


def content(params, inputs, items: jax.Array) -> list[jax.Array]:
  """Per modality (N, d_m) the (fine-tuned) filled features of `items`.

  An item's offset is added only where the run's mask (`inputs.available`,
  training's or evaluation's) observes the modality: a hidden row is the fill
  alone, so nothing the item learned from its hidden modality leaks back. In
  training a hidden row's offset gets no gradient and stays 0.
  """
  feats = inputs.item_features(items)
  if "delta" not in params:
    return list(feats)
  observed = inputs.available[items] > 0                    # (N, M)
  return [jnp.where(observed[:, m:m + 1], x + delta[items], x)
          for m, (x, delta) in enumerate(zip(feats, params["delta"]))]


def projected(params, inputs, items: jax.Array) -> list[jax.Array]:
  """Per modality (N, D) `trs_m(content)` of `items` (the authors' `*_trs`)."""
  return [apply_linear(p, x) for x, p in zip(content(params, inputs, items), params["trs"])]
