"""GAR on standardised pretrained embeddings: a labelled variant of `gar`,
NOT the authors' recipe.

Everything is `gar` (jaxrec/models/gar.py: the authors' final code,
zfnWong/GAR @ 280bfc1e, GAR/GAR.py and main.py) except one thing [D]: in
stage 2 both players, and the scoring at test, see the frozen MF tables
multiplied by one constant per run, c = 1 / RMS(warm item rows), so the warm
item embeddings have unit root-mean-square per coordinate (users are scaled by
the same c, so e_u · e_i keeps its ranking). The authors feed their own
pretrained 200-d embeddings unchanged; their scale is not in the repository
(data/CiteULike/ncf.npy is not stored). Ours, MF-BPR in-sweep, are about 0.21
per coordinate (mean |e|) on TikTok, below the generator's initial output
(L1 0.66 to them), and then the adversarial term drives the generator rather
than the L1 similarity (issue 16's measurements, BUILD_NOTES "GAR"). Since the
recommender's input batch norm divides by the items' spread, a larger
embedding scale shrinks the adversarial gradient on G relative to the L1 term
(whose gradient is scale-free): standardising is a re-weighting of α in effect.

Stage 1 (MF-BPR) is unchanged and unscaled; all hyper-parameters are gar's.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxrec.models import gar
from jaxrec.models.base import Batch, Hooks, ModelInputs, ModelSpec, Run, State


def standardised(params, inputs: ModelInputs, spec: ModelSpec):
  """`params` with the MF tables times c = 1 / RMS(warm item rows) (no gradient in c)."""
  mf = params["mf"]
  warm = inputs.warm_items(spec.n_items).astype(jnp.float32)
  mean_square = (jnp.sum(jnp.square(mf["items"]) * warm[:, None])
                 / jnp.maximum(jnp.sum(warm) * mf["items"].shape[-1], 1.0))
  c = jax.lax.stop_gradient(jax.lax.rsqrt(jnp.maximum(mean_square, 1e-12)))
  return {**params, "mf": {name: table * c for name, table in mf.items()}}


def make(spec: ModelSpec) -> Hooks:
  """gar's hooks with the players' steps and the scoring on the standardised tables."""
  def aux_step(state: State, batch: Batch, run: Run):
    inputs, hp, ctx = run
    scaled = standardised(state.params, inputs, spec)
    return gar.players_steps(scaled, state.aux, batch, inputs, hp, ctx, spec), {}

  def embed(state: State, run: Run):
    return gar.scores(standardised(state.params, run.inputs, spec), state.aux, run.inputs, spec)
  return dataclasses.replace(gar.make(spec), aux_step=aux_step, embed=embed)


GAR_SCALED = dataclasses.replace(gar.GAR, name="gar_scaled", make=make)
