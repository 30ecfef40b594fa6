"""Loss terms and invariance penalties as pure functions.

Every function is keyword-only and works on arrays, so a user can assemble a new
objective from them and train it with the same engine (see README, "Custom losses").
Per-example functions leave reduction to the caller; `weighted_mean` is the one
reduction used everywhere so that padded batch slots (weight 0) never count.

Axes: `E` environments, `B` batch, `M` modalities, `D` embedding.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp


def weighted_mean(values: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean of `values` over entries with weight > 0 (weights broadcast); 0 if none."""
  weights = jnp.broadcast_to(weights, values.shape).astype(values.dtype)
  return jnp.sum(values * weights) / jnp.maximum(jnp.sum(weights), 1e-12)


def bpr(*, pos_scores: jax.Array, neg_scores: jax.Array) -> jax.Array:
  """Per-example BPR loss `softplus(neg - pos) = -log sigmoid(pos - neg)`.

  Returns an array of the broadcast shape of the inputs (no reduction).
  References: Rendle et al., BPR, UAI 2009.
  """
  return jax.nn.softplus(neg_scores - pos_scores)


def bpr_risk(*, score_diff: jax.Array, weights: jax.Array) -> jax.Array:
  """Mean BPR risk of a batch given `score_diff = pos - neg`, shape (B,)."""
  return weighted_mean(jax.nn.softplus(-score_diff), weights)


def variance_penalty(*, risks: jax.Array, active: jax.Array | None = None) -> jax.Array:
  """Unbiased (ddof=1) variance of the environment risks (V-REx; MILK's penalty).

  Args:
    risks: (E,) per-environment risks.
    active: optional (E,) 0/1 weights; inactive environments are ignored
      (used by the `w/o e=0` ablation so that all runs keep the same shape).
  """
  active = jnp.ones_like(risks) if active is None else active.astype(risks.dtype)
  n = jnp.sum(active)
  mean = jnp.sum(risks * active) / n
  return jnp.sum(active * (risks - mean) ** 2) / jnp.maximum(n - 1.0, 1.0)


def irmv1_penalty(*, risk_of_scale: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """IRMv1 penalty `(d/dw R(w * f) at w = 1)^2` by `jax.grad` over the dummy scale w.

  Args:
    risk_of_scale: the environment's risk as a function of the scalar dummy
      classifier w that multiplies the model's output.
  References: Arjovsky et al., Invariant Risk Minimization, 2019, eq. (IRMv1).
  """
  return jnp.square(jax.grad(risk_of_scale)(jnp.float32(1.0)))


def irmv1_split_penalty(
    *, risk_of_scale_a: Callable[[jax.Array], jax.Array],
    risk_of_scale_b: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """Unbiased IRMv1: product of the dummy-scale gradients on two disjoint halves.

  The square of one gradient is a biased estimate of the squared expected
  gradient; the product of two independent half-batch gradients is unbiased
  (Arjovsky et al. 2019, section 3.2 / appendix D).
  """
  one = jnp.float32(1.0)
  return jax.grad(risk_of_scale_a)(one) * jax.grad(risk_of_scale_b)(one)


def bpr_irm_penalties(*, score_diff: jax.Array, weights: jax.Array,
                      split: bool) -> jax.Array:
  """IRMv1 penalty of one environment's BPR risk; `split` selects the unbiased form.

  Args:
    score_diff: (B,) `pos - neg` scores of the environment.
    weights: (B,) 0/1 validity of batch slots.
    split: use the even / odd halves of the batch (unbiased variant).
  """
  if not split:
    return irmv1_penalty(
        risk_of_scale=lambda w: bpr_risk(score_diff=w * score_diff, weights=weights))
  parity = jnp.arange(score_diff.shape[0]) % 2
  return irmv1_split_penalty(
      risk_of_scale_a=lambda w: bpr_risk(score_diff=w * score_diff,
                                         weights=weights * (parity == 0)),
      risk_of_scale_b=lambda w: bpr_risk(score_diff=w * score_diff,
                                         weights=weights * (parity == 1)))


PENALTIES = ("variance", "irm", "irm_split")


def environment_risk(*, score_diff: jax.Array, weights: jax.Array,
                     penalty: str) -> tuple[jax.Array, jax.Array]:
  """(BPR risk, IRMv1 term) of one environment; the IRM term is 0 under 'variance'.

  Args:
    score_diff: (B,) `pos - neg` scores of the environment.
    weights: (B,) 0/1 validity of batch slots.
    penalty: 'variance' | 'irm' | 'irm_split' (see `invariance_penalty`).
  """
  if penalty not in PENALTIES:
    raise ValueError(f"unknown penalty {penalty!r}; expected one of {PENALTIES}")
  risk = bpr_risk(score_diff=score_diff, weights=weights)
  if penalty == "variance":
    return risk, jnp.zeros(())
  return risk, bpr_irm_penalties(score_diff=score_diff, weights=weights,
                                 split=penalty == "irm_split")


def invariance_penalty(*, risks: jax.Array, irm: jax.Array, penalty: str,
                       active: jax.Array | None = None) -> jax.Array:
  """The invariance penalty across environments (MILK and I3-MRec share it).

  'variance': V-REx's unbiased variance of `risks`; 'irm' / 'irm_split': the
  mean of the environments' IRMv1 terms `irm` (from `environment_risk`).
  `active` (E,) 0/1 leaves environments out (the `w/o e=0` ablation).
  """
  if penalty == "variance":
    return variance_penalty(risks=risks, active=active)
  if active is None:
    return jnp.mean(irm)
  return jnp.sum(irm * active) / jnp.sum(active)


def alignment_mse(*, embeddings: jax.Array, available: jax.Array,
                  item_weights: jax.Array) -> jax.Array:
  """MILK's cross-modality alignment: element-mean MSE between modality embeddings.

  For each modality pair (a, b) the MSE is averaged over the items that have
  both modalities and weight > 0, and over the D dimensions; pairs are averaged
  (for M = 2 this is the reference code's single MSE).

  Args:
    embeddings: (N, M, D) per-modality item embeddings.
    available: (N, M) 1 where the item's modality is observed.
    item_weights: (N,) e.g. 1 for the first occurrence of each unique item.
  """
  n_modalities = embeddings.shape[1]
  pair_losses = []
  for a in range(n_modalities):
    for b in range(a + 1, n_modalities):
      sq = jnp.mean(jnp.square(embeddings[:, a] - embeddings[:, b]), axis=-1)
      w = item_weights * available[:, a] * available[:, b]
      pair_losses.append(weighted_mean(sq, w))
  return jnp.mean(jnp.stack(pair_losses))



def info_nce(*, anchors: jax.Array, positives: jax.Array, weights: jax.Array,
             temperature: float) -> jax.Array:
  """Mean InfoNCE with cosine similarity and in-batch negatives.

  Row b's positive is `positives[b]`; the other valid rows are its negatives.
  Args:
    anchors, positives: (B, D).
    weights: (B,) 0/1 validity; invalid rows neither count nor act as negatives.
  An all-zero row (an item without any modality under `fill=zero`) stays zero
  with a finite gradient, as torch's `F.normalize` (`jnp.linalg.norm` would
  differentiate to NaN there). On the CPU, where the (B, B) logits would not
  fit in cache (above `INFO_NCE_BLOCK_FROM` bytes), `blocked_info_nce` computes
  the same loss and gradients in blocks.
  References: van den Oord et al., CPC, 2018.
  """
  if not _blocked_on_this_backend(anchors.shape[0], positives.shape[0]):
    return _info_nce_rows(_cosine_logits(anchors, positives, temperature), weights)
  from jaxrec.models.layers import l2_normalise_rows
  a, p = l2_normalise_rows(anchors), l2_normalise_rows(positives)
  temperature = jnp.asarray(temperature, a.dtype)
  return blocked_info_nce(a, p, weights.astype(a.dtype), temperature, _block_rows(p.shape[0]))


def info_nce_both_ways(*, a: jax.Array, b: jax.Array, weights: jax.Array,
                       temperature: float) -> tuple[jax.Array, jax.Array]:
  """(`info_nce(a, b)`, `info_nce(b, a)`) from one similarity matrix: the
  second's logits are the first's transposed, so the (B, B) product is formed
  once (half the FLOPs of two calls, the same numbers)."""
  logits = _cosine_logits(a, b, temperature)
  return _info_nce_rows(logits, weights), _info_nce_rows(logits, weights, axis=0)


def _cosine_logits(anchors: jax.Array, positives: jax.Array, temperature: float) -> jax.Array:
  # Imported here: jaxrec.models imports this module while it loads.
  from jaxrec.models.layers import l2_normalise_rows
  return l2_normalise_rows(anchors) @ l2_normalise_rows(positives).T / temperature


def _info_nce_rows(logits: jax.Array, weights: jax.Array, axis: int = -1) -> jax.Array:
  """Mean over valid anchors of −log softmax(anchor's logits)[own positive], the
  invalid positives masked; anchors are rows (`axis=-1`) or columns (`axis=0`:
  the InfoNCE of the transposed logits, without forming the transpose, whose
  layout cost more than the product it saves)."""
  valid = weights > 0
  masked = jnp.where(valid[None, :] if axis in (-1, 1) else valid[:, None], logits, -jnp.inf)
  # −log softmax(x)_own = logsumexp(x) − x_own: no (B, B) log-softmax is formed. A
  # valid anchor's own positive is valid, so its diagonal entry is unmasked.
  per_anchor = jax.nn.logsumexp(masked, axis=axis) - jnp.diagonal(logits)
  return weighted_mean(jnp.where(valid, per_anchor, 0.0), weights)


# The blocked InfoNCE (CPU only): anchors per block so that one block's logits,
# (rows, B) float32, take at most this many bytes: they stay in a core's L2
# (2 MiB on the development VM) through the exp, the sum and the two products
# of the backward. Above `INFO_NCE_BLOCK_FROM` logits bytes the whole (B, B)
# matrix would not, and each pass over it is a trip to L3 or DRAM.
INFO_NCE_BLOCK_BYTES = 1 << 20
INFO_NCE_BLOCK_FROM = 4 << 20


def _blocked_on_this_backend(n_anchors: int, n_positives: int) -> bool:
  return (jax.default_backend() == "cpu"
          and 4 * n_anchors * n_positives > INFO_NCE_BLOCK_FROM)


def _block_rows(n_keys: int) -> int:
  return max(8, INFO_NCE_BLOCK_BYTES // (4 * n_keys) // 8 * 8)


def _row_blocks(x: jax.Array, rows: int) -> jax.Array:
  """(n, ...) → (⌈n / rows⌉, rows, ...), zero-padded."""
  x = jnp.pad(x, [(0, -x.shape[0] % rows)] + [(0, 0)] * (x.ndim - 1))
  return x.reshape((-1, rows) + x.shape[1:])


def _masked_logits(queries: jax.Array, keys: jax.Array, key_weights: jax.Array,
                   temperature: jax.Array) -> jax.Array:
  return jnp.where(key_weights[None, :] > 0, queries @ keys.T / temperature, -jnp.inf)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4,))
def blocked_info_nce(anchors: jax.Array, positives: jax.Array, weights: jax.Array,
                     temperature: jax.Array, rows: int) -> jax.Array:
  """`info_nce` of unit rows (`weighted_mean` over the valid anchors of
  `logsumexp_j(a_b·p_j / t) − a_b·p_b / t`, j over valid rows), computed
  `rows` anchors at a time: no (B, B) matrix is ever formed.

  Its VJP computes every gradient in the forward pass (the loss's cotangent is
  a scalar that only scales them): one pass by blocks of anchors (the
  log-sum-exp and `P @ positives`, which gives d/danchors and d/dtemperature)
  and one by blocks of positives (`Pᵀ @ anchors` for d/dpositives, from the
  block's own transposed logits, so that both products read their left operand
  row by row: the contraction over the first axis that `Pᵀ @ anchors` otherwise
  is runs 3–4× slower on XLA:CPU, even in cache). Four products against plain
  autodiff's three, each on a block in cache; exact up to float rounding.
  Without a gradient only the log-sum-exp pass runs. Measured on the 2-core VM
  (one core, D = 64, loss and gradients): B = 2,048 46 → 25 ms, B = 4,096 225 →
  121 ms (BUILD_NOTES "Speed").
  """
  return _info_nce_from_lse(_blocked_lse(anchors, positives, weights, temperature, rows),
                            anchors, positives, weights, temperature)


def _blocked_lse(anchors, positives, weights, temperature, rows):
  lse = jax.lax.map(
      lambda block: jax.nn.logsumexp(_masked_logits(block, positives, weights, temperature), -1),
      _row_blocks(anchors, rows))
  return lse.reshape(-1)[:anchors.shape[0]]


def _info_nce_from_lse(lse, anchors, positives, weights, temperature):
  own = jnp.sum(anchors * positives, axis=-1) / temperature
  return weighted_mean(jnp.where(weights > 0, lse - own, 0.0), weights)


def _blocked_info_nce_fwd(anchors, positives, weights, temperature, rows):
  valid = weights > 0
  total = jnp.sum(weights)
  # d loss / d (anchor b's term): weighted_mean's weights (0 for invalid anchors).
  share = jnp.where(valid, weights, 0.0) / jnp.maximum(total, 1e-12)

  def by_anchors(_, a):
    logits = _masked_logits(a, positives, weights, temperature)
    top = jnp.max(logits, axis=-1)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e = jnp.exp(logits - top[:, None])                          # 0 at invalid positives
    total_e = jnp.sum(e, axis=-1)
    soft_pos = (e @ positives) / jnp.where(total_e > 0, total_e, 1.0)[:, None]
    return None, (top + jnp.log(total_e), soft_pos)              # (lse, P @ positives)

  n, d = anchors.shape
  _, (lse, soft_pos) = jax.lax.scan(by_anchors, None, _row_blocks(anchors, rows))
  lse, soft_pos = lse.reshape(-1)[:n], soft_pos.reshape(-1, d)[:n]
  # exp(logit − lse) · share as one exp: the shift is +inf where share is 0.
  shift = jnp.where(share > 0, lse - jnp.log(jnp.where(share > 0, share, 1.0)), jnp.inf)

  def by_positives(_, p):
    return None, jnp.exp(p @ anchors.T / temperature - shift[None, :]) @ anchors

  _, soft_anchors = jax.lax.scan(by_positives, None, _row_blocks(positives, rows))
  soft_anchors = jnp.where(valid[:, None], soft_anchors.reshape(-1, d)[:n], 0.0)
  own = jnp.sum(anchors * positives, axis=-1) / temperature
  per_anchor = jnp.where(valid, lse - own, 0.0)
  loss = jnp.sum(weights * per_anchor) / jnp.maximum(total, 1e-12)
  # Σ_j P_bj logit_bj = a_b · (P @ positives)_b / t: the temperature's gradient
  # without another pass over the logits.
  expected_logit = jnp.sum(anchors * soft_pos, axis=-1) / temperature
  grads = (share[:, None] * (soft_pos - positives) / temperature,
           (soft_anchors - share[:, None] * anchors) / temperature,
           (per_anchor - jnp.where(total > 1e-12, loss, 0.0)) / jnp.maximum(total, 1e-12),
           (jnp.sum(share * (own - expected_logit)) / temperature).reshape(jnp.shape(temperature)))
  return loss, grads


def _blocked_info_nce_bwd(rows, grads, g):
  del rows
  return tuple((g * d).astype(d.dtype) for d in grads)


blocked_info_nce.defvjp(_blocked_info_nce_fwd, _blocked_info_nce_bwd)


def gaussian_nll(*, mu: jax.Array, logvar: jax.Array, target: jax.Array,
                 weights: jax.Array) -> jax.Array:
  """Negative log-likelihood (up to constants) of `target` under N(mu, e^logvar).

  `mean_b Σ_d [(mu - target)^2 / e^logvar + logvar]`, what CLUB's variational
  network minimises to fit q(target | x).
  """
  per_row = jnp.sum(jnp.square(mu - target) / jnp.exp(logvar) + logvar, axis=-1)
  return weighted_mean(per_row, weights)


def club_upper_bound(*, mu: jax.Array, logvar: jax.Array, target: jax.Array,
                     shuffled_target: jax.Array, weights: jax.Array) -> jax.Array:
  """Sampled CLUB bound on I(x; target) given q(target | x) = N(mu, e^logvar).

  `mean_b [Σ_d −(mu−y)²/e^logvar − Σ_d −(mu−y_perm)²/e^logvar] / 2`, with
  `y_perm` the targets of a random in-batch permutation.
  References: Cheng et al., CLUB, ICML 2020 (sampled form, eq. 10).
  """
  positive = -jnp.sum(jnp.square(mu - target) / jnp.exp(logvar), axis=-1)
  negative = -jnp.sum(jnp.square(mu - shuffled_target) / jnp.exp(logvar), axis=-1)
  return weighted_mean(positive - negative, weights) / 2.0
