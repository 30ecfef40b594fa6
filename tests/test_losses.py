"""Loss terms and penalties against the reference fixture and closed forms."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import losses
from jaxrec.models import milk
from jaxrec.models.base import Batch, ModelInputs, ModelSpec
from jaxrec.data.dataset import l2_normalise
from tests.helpers import load_fixture


def test_milk_minibatch_matches_reference_code():
  fx = load_fixture("milk_minibatch_loss.json")
  inp, exp = fx["inputs"], fx["expected"]
  image, text = (np.array(inp[k], np.float32) for k in ("image", "text"))
  params = {
      "user_table": {"embedding": jnp.array(inp["user_emb"])},
      "extractor_0": {"kernel": jnp.array(inp["W_image"]).T, "bias": jnp.array(inp["b_image"])},
      "extractor_1": {"kernel": jnp.array(inp["W_text"]).T, "bias": jnp.array(inp["b_text"])}}
  n_users, dim = np.array(inp["user_emb"]).shape
  spec = ModelSpec(n_users, image.shape[0], (image.shape[1], text.shape[1]), dim)
  # The reference code knows no availability: item 2's zero image row is used as is.
  inputs = ModelInputs(features=(jnp.array(l2_normalise(image)), jnp.array(l2_normalise(text))),
                       available=jnp.ones((image.shape[0], 2)),
                       fill=(jnp.zeros(image.shape[1]), jnp.zeros(text.shape[1])))
  batch = Batch(users=jnp.array(inp["users"]), pos=jnp.array(inp["pos_items"]),
                neg=jnp.array(inp["neg_items"]), weights=jnp.ones(len(inp["users"])))
  hp = dict(penalty_weight=inp["penalty_coeff"], align_weight=inp["align_coeff"],
            reg=inp["reg_coeff"], use_envs=1.0, use_align=1.0)

  def total(params):
    users, c_pos, c_neg = milk.batch_embeddings(milk.network(spec), params, batch, inputs,
                                                spec.n_items)
    terms = milk.milk_terms(users=users, c_pos=c_pos, c_neg=c_neg,
                            pos_available=inputs.available[batch.pos], batch=batch,
                            env_weights=jnp.array(inp["env_weights"]),
                            env_active=jnp.ones(3), penalty="variance")
    return milk.combine(terms, hp), terms

  (value, terms), grads = jax.value_and_grad(total, has_aux=True)(params)
  np.testing.assert_allclose(terms["env_risks"], exp["env_bpr"], rtol=1e-5)
  np.testing.assert_allclose(terms["l2"], exp["env0_reg"], rtol=1e-5)
  np.testing.assert_allclose(terms["align"], exp["align_mse"], rtol=1e-5)
  np.testing.assert_allclose(terms["penalty"], exp["variance_ddof1"], rtol=1e-3, atol=1e-9)
  np.testing.assert_allclose(value, exp["total"], rtol=1e-5)
  np.testing.assert_allclose(grads["user_table"]["embedding"], exp["grad_user_emb"], atol=1e-5)
  np.testing.assert_allclose(grads["extractor_0"]["kernel"].T, exp["grad_W_image"], atol=1e-5)
  np.testing.assert_allclose(grads["extractor_1"]["bias"], exp["grad_b_text"], atol=1e-5)


def test_variance_is_unbiased_and_respects_active():
  risks = np.array([0.3, 0.7, 1.9, 0.2], np.float32)
  assert float(losses.variance_penalty(risks=jnp.array(risks))) == pytest.approx(
      np.var(risks, ddof=1), rel=1e-6)
  active = jnp.array([0.0, 1.0, 1.0, 1.0])
  assert float(losses.variance_penalty(risks=jnp.array(risks), active=active)) == (
      pytest.approx(np.var(risks[1:], ddof=1), rel=1e-6))


def _bpr_dummy_grad(diff, weights):
  """Closed form: d/dw mean softplus(-w d) at w = 1 = mean(-d * sigmoid(-d))."""
  d = np.asarray(diff, np.float64)
  w = np.asarray(weights, np.float64)
  return np.sum(w * (-d / (1 + np.exp(d)))) / np.sum(w)


def test_irmv1_matches_hand_gradient():
  rng = np.random.default_rng(0)
  diff = rng.standard_normal(64).astype(np.float32) * 2
  weights = (rng.random(64) < 0.9).astype(np.float32)
  got = losses.bpr_irm_penalties(score_diff=jnp.array(diff), weights=jnp.array(weights),
                                 split=False)
  assert float(got) == pytest.approx(_bpr_dummy_grad(diff, weights) ** 2, rel=1e-5)


def test_split_irmv1_is_product_of_half_gradients():
  rng = np.random.default_rng(1)
  diff = rng.standard_normal(50).astype(np.float32)
  weights = np.ones(50, np.float32)
  weights[-3:] = 0.0
  got = losses.bpr_irm_penalties(score_diff=jnp.array(diff), weights=jnp.array(weights),
                                 split=True)
  even, odd = np.arange(50) % 2 == 0, np.arange(50) % 2 == 1
  expected = (_bpr_dummy_grad(diff[even], weights[even])
              * _bpr_dummy_grad(diff[odd], weights[odd]))
  assert float(got) == pytest.approx(expected, rel=1e-5)


def test_bpr_and_weighted_mean():
  pos, neg = jnp.array([2.0, -1.0, 0.0]), jnp.array([0.0, 1.0, 0.0])
  expected = np.log1p(np.exp(np.array([-2.0, 2.0, 0.0])))
  np.testing.assert_allclose(losses.bpr(pos_scores=pos, neg_scores=neg), expected, rtol=1e-6)
  assert float(losses.weighted_mean(jnp.array([1.0, 5.0, 3.0]), jnp.array([1.0, 0.0, 1.0]))) == 2.0


def test_alignment_skips_missing_and_duplicate_items():
  emb = jnp.array([[[1.0, 0.0], [0.0, 0.0]],     # item a: mse 0.5
                   [[2.0, 2.0], [0.0, 0.0]],     # item b: mse 4, modality 1 missing
                   [[1.0, 0.0], [0.0, 0.0]]])    # item a again (duplicate slot)
  available = jnp.array([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
  first = milk.first_occurrence(jnp.array([7, 9, 7]), jnp.ones(3))
  np.testing.assert_array_equal(first, [1.0, 1.0, 0.0])
  got = losses.alignment_mse(embeddings=emb, available=available, item_weights=first)
  assert float(got) == pytest.approx(0.5)


def test_alignment_averages_modality_pairs():
  rng = np.random.default_rng(0)
  emb = rng.standard_normal((5, 3, 4)).astype(np.float32)
  got = losses.alignment_mse(embeddings=jnp.array(emb), available=jnp.ones((5, 3)),
                             item_weights=jnp.ones(5))
  pairs = [(0, 1), (0, 2), (1, 2)]
  expected = np.mean([np.mean((emb[:, a] - emb[:, b]) ** 2) for a, b in pairs])
  assert float(got) == pytest.approx(expected, rel=1e-5)


def test_row_normalisation_matches_float64_and_has_a_finite_gradient_at_a_zero_row():
  from jaxrec.models.layers import l2_normalise_rows
  x = np.array([[3.0, 4.0], [0.0, 0.0], [1e-3, -2e-3]])
  norms = np.linalg.norm(x, axis=1, keepdims=True)
  expected = x / np.maximum(norms, 1e-12)
  np.testing.assert_allclose(l2_normalise_rows(jnp.asarray(x, jnp.float32)), expected,
                             rtol=1e-6)
  grad = jax.grad(lambda v: jnp.sum(l2_normalise_rows(v) * jnp.arange(2.0)))(
      jnp.asarray(x, jnp.float32))
  assert bool(jnp.isfinite(grad).all())
  np.testing.assert_allclose(grad[1], [0.0, 1e12], rtol=1e-6)   # 1/max(0, 1e-12) · e_1


def _info_nce_float64(anchors, positives, weights, temperature, normalised=False):
  """InfoNCE in float64 NumPy with torch's `F.normalize` (`x / max(||x||, 1e-12)`)."""
  unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
  a = anchors if normalised else unit(anchors)
  logits = a @ unit(positives).T / temperature
  valid = np.flatnonzero(weights > 0)
  rows = [np.log(np.exp(logits[b, valid]).sum()) - logits[b, b] for b in valid]
  return float(np.mean(rows))


def _central_difference(f, x, h=1e-6):
  grad = np.zeros_like(x)
  for index in np.ndindex(*x.shape):
    step = np.zeros_like(x)
    step[index] = h
    grad[index] = (f(x + step) - f(x - step)) / (2 * h)
  return grad


def test_info_nce_both_ways_is_two_info_nce_calls_from_one_product():
  rng = np.random.default_rng(1)
  a, b = (jnp.asarray(rng.standard_normal((7, 5)), jnp.float32) for _ in range(2))
  weights = jnp.array([1, 1, 0, 1, 1, 1, 1.0])
  ab, ba = losses.info_nce_both_ways(a=a, b=b, weights=weights, temperature=0.3)
  assert float(ab) == pytest.approx(_info_nce_float64(np.asarray(a), np.asarray(b),
                                                      np.asarray(weights), 0.3), rel=1e-5)
  assert float(ba) == pytest.approx(_info_nce_float64(np.asarray(b), np.asarray(a),
                                                      np.asarray(weights), 0.3), rel=1e-5)
  assert abs(float(ab) - float(ba)) > 1e-3                      # not symmetric in general
  both = lambda a, b: sum(losses.info_nce_both_ways(a=a, b=b, weights=weights,
                                                    temperature=0.3))
  apart = lambda a, b: (losses.info_nce(anchors=a, positives=b, weights=weights,
                                        temperature=0.3)
                        + losses.info_nce(anchors=b, positives=a, weights=weights,
                                          temperature=0.3))
  for got, want in zip(jax.grad(both, argnums=(0, 1))(a, b),
                       jax.grad(apart, argnums=(0, 1))(a, b)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


def test_info_nce_matches_float64_and_has_a_finite_gradient_at_a_zero_row():
  # Row 1's anchor and row 2's positive are exactly zero (an item without any
  # modality under fill=zero); row 5 is padding.
  rng = np.random.default_rng(0)
  a, p = rng.standard_normal((6, 4)), rng.standard_normal((6, 4))
  a[1], p[2] = 0.0, 0.0
  weights = np.array([1, 1, 1, 1, 1, 0.0])
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  loss = lambda a, p: losses.info_nce(anchors=a, positives=p, weights=f32(weights),
                                      temperature=0.4)
  assert float(loss(f32(a), f32(p))) == pytest.approx(
      _info_nce_float64(a, p, weights, 0.4), rel=1e-5)
  grad_a, grad_p = (np.asarray(g) for g in jax.grad(loss, argnums=(0, 1))(f32(a), f32(p)))
  assert np.isfinite(grad_a).all() and np.isfinite(grad_p).all()
  # Away from the zero rows, the float64 gradient.
  want_a = _central_difference(lambda x: _info_nce_float64(x, p, weights, 0.4), a)
  want_p = _central_difference(lambda x: _info_nce_float64(a, x, weights, 0.4), p)
  nonzero_a, nonzero_p = [0, 2, 3, 4, 5], [0, 1, 3, 4, 5]
  np.testing.assert_allclose(grad_a[nonzero_a], want_a[nonzero_a], rtol=1e-3, atol=1e-5)
  np.testing.assert_allclose(grad_p[nonzero_p], want_p[nonzero_p], rtol=1e-3, atol=1e-5)
  # At the zero anchor row, torch's subgradient: the gradient with respect to the
  # normalised row, divided by the 1e-12 floor.
  unit_a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
  want_unit = _central_difference(
      lambda x: _info_nce_float64(x, p, weights, 0.4, normalised=True), unit_a)
  np.testing.assert_allclose(grad_a[1], want_unit[1] / 1e-12, rtol=1e-3)


@pytest.mark.parametrize("n_valid", [10, 0])
def test_blocked_info_nce_equals_the_plain_one_with_its_gradients(monkeypatch, n_valid):
  """The CPU path for large batches (`losses.blocked_info_nce`, its own VJP), forced
  on a small batch in blocks of 8 rows (13 rows: two blocks, the second padded)
  with padding rows and a zero anchor: the same loss and the same gradients
  for anchors, positives, the temperature and the weights as the plain (B, B) path and the
  float64 reference; with no valid row, 0 and finite gradients."""
  rng = np.random.default_rng(4)
  a, p = rng.standard_normal((13, 5)), rng.standard_normal((13, 5))
  a[3] = 0.0
  weights = np.zeros(13)
  weights[rng.permutation(13)[:n_valid]] = 1.0
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  loss = lambda a, p, t, w: losses.info_nce(anchors=a, positives=p, weights=w, temperature=t)
  grad = jax.value_and_grad(loss, argnums=(0, 1, 2, 3))
  plain_value, plain_grads = grad(f32(a), f32(p), f32(0.3), f32(weights))
  monkeypatch.setattr(losses, "INFO_NCE_BLOCK_FROM", 0)
  monkeypatch.setattr(losses, "INFO_NCE_BLOCK_BYTES", 4 * 13 * 8)
  assert losses._block_rows(13) == 8
  value, grads = grad(f32(a), f32(p), f32(0.3), f32(weights))
  if n_valid:
    assert float(value) == pytest.approx(_info_nce_float64(a, p, weights, 0.3), rel=1e-5)
  else:
    assert float(value) == 0.0
  assert float(value) == pytest.approx(float(plain_value), rel=1e-6, abs=1e-7)
  for got, want in zip(grads, plain_grads):
    assert np.isfinite(np.asarray(got)).all()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert n_valid == 0 or float(jnp.abs(grads[2])) > 1e-3      # the temperature's is not dropped
