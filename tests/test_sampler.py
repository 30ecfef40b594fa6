"""On-device negatives never hit a training positive; membership matches NumPy."""
import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.engine.sampler import PositiveIndex, sample_negatives


def _pairs(seed, n_users=50, n_items=40, n=600):
  rng = np.random.default_rng(seed)
  return np.unique(np.stack([rng.integers(0, n_users, n), rng.integers(0, n_items, n)], 1),
                   axis=0).astype(np.int32)


def test_contains_matches_numpy():
  pairs = _pairs(0)
  index = PositiveIndex.from_pairs(pairs, 50)
  users, items = np.meshgrid(np.arange(50), np.arange(40), indexing="ij")
  got = np.asarray(index.contains(jnp.asarray(users.ravel()), jnp.asarray(items.ravel())))
  dense = np.zeros((50, 40), bool)
  dense[pairs[:, 0], pairs[:, 1]] = True
  np.testing.assert_array_equal(got, dense.ravel())


def test_negatives_are_never_positives_and_cover_items():
  pairs = _pairs(1)
  index = PositiveIndex.from_pairs(pairs, 50)
  users = jnp.asarray(np.repeat(pairs[:, 0], 20))
  neg = np.asarray(jax.jit(lambda k: sample_negatives(k, users, index, 40))(
      jax.random.PRNGKey(0)))
  dense = np.zeros((50, 40), bool)
  dense[pairs[:, 0], pairs[:, 1]] = True
  assert not dense[np.asarray(users), neg].any()
  assert len(np.unique(neg)) == 40
