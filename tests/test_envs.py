"""Cyclic-mixup environments: M+1 rows on the simplex, cyclic, one uniform row."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrec import envs
from jaxrec.models import milk


@pytest.mark.parametrize("n_modalities", [2, 3, 5])
@pytest.mark.parametrize("alpha", [0.01, 1.0, 100.0])
def test_rows_cyclic_and_on_simplex(n_modalities, alpha):
  w = np.asarray(envs.cyclic_mixup(jax.random.PRNGKey(3), alpha=alpha,
                                   n_modalities=n_modalities))
  assert w.shape == (n_modalities + 1, n_modalities)
  assert np.all(np.isfinite(w)) and np.all(w >= 0)
  np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(w[0], 1.0 / n_modalities)
  for k in range(n_modalities):
    np.testing.assert_allclose(w[1 + k], np.roll(w[1], k))


def test_two_modalities_match_reference_layout():
  w = np.asarray(envs.cyclic_mixup(jax.random.PRNGKey(0), alpha=1.0, n_modalities=2))
  lam = w[1]
  np.testing.assert_allclose(w, [[0.5, 0.5], lam, lam[::-1]])


def test_without_cyclic_shift_rows_are_independent():
  w = np.asarray(envs.cyclic_mixup(jax.random.PRNGKey(0), alpha=1.0, n_modalities=3,
                                   cyclic=False))
  np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-5)
  assert not np.allclose(np.sort(w[1]), np.sort(w[2]))


RUN_KEY = jax.random.PRNGKey(42)   # the run's fixed key (`w/o random` draws with it)


def _hp(**kw):
  hp = {k: jnp.float32(v) for k, v in milk.DEFAULT_HPARAMS.items()}
  hp.update({k: jnp.float32(v) for k, v in kw.items()})
  return hp


def test_ablation_switches():
  k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
  w1, active = milk.mixing_weights(k1, RUN_KEY, _hp(), 2)
  w2, _ = milk.mixing_weights(k2, RUN_KEY, _hp(), 2)
  np.testing.assert_array_equal(active, [1, 1, 1])
  assert not np.allclose(w1, w2)                       # random: a new λ per batch
  f1, _ = milk.mixing_weights(k1, RUN_KEY, _hp(random_mix=0.0), 2)
  f2, _ = milk.mixing_weights(k2, RUN_KEY, _hp(random_mix=0.0), 2)
  np.testing.assert_array_equal(f1, f2)                # w/o random: λ frozen
  _, active = milk.mixing_weights(k1, RUN_KEY, _hp(use_uniform_env=0.0), 2)
  np.testing.assert_array_equal(active, [0, 1, 1])     # w/o e=0
  _, active = milk.mixing_weights(k1, RUN_KEY, _hp(use_envs=0.0), 2)
  np.testing.assert_array_equal(active, [1, 0, 0])     # environments off
