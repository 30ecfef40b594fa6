"""Pieces that several models are built from: initialisers, dropout, batch helpers."""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def torch_linear_init(fan_in: int):
  """PyTorch `nn.Linear` default for weight and bias: U(±1/sqrt(fan_in))."""
  bound = 1.0 / float(fan_in) ** 0.5

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


# How a (d_in, d_out) weight is drawn, named as the PyTorch call the authors make:
# "torch" is `nn.Linear`'s default, the two xavier ones `nn.init.xavier_*_` (an
# untruncated normal: flax's `xavier_normal` is truncated).
WEIGHT_INITS = ("torch", "xavier_uniform", "xavier_normal")


def weight_init(kind: str, fan_in: int):
  """The initialiser `(key, shape, dtype) -> array` of a weight drawn as `kind`."""
  if kind == "torch":
    return torch_linear_init(fan_in)
  if kind == "xavier_uniform":
    return jax.nn.initializers.glorot_uniform()
  if kind == "xavier_normal":
    return jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal")
  raise ValueError(f"weight init {kind!r}: expected one of {WEIGHT_INITS}")


def xavier_normal(key, d_in: int, d_out: int) -> jax.Array:
  """(d_in, d_out) drawn as PyTorch's `xavier_normal_`."""
  return weight_init("xavier_normal", d_in)(key, (d_in, d_out), jnp.float32)


def xavier_table(key, n: int, dim: int) -> jax.Array:
  """(n, dim) drawn as PyTorch's `xavier_uniform_` on an `nn.Embedding` weight."""
  return weight_init("xavier_uniform", n)(key, (n, dim), jnp.float32)


def torch_bias(key, d_in: int, d_out: int) -> jax.Array:
  """(d_out,) bias of a PyTorch `nn.Linear(d_in, d_out)` at its default init."""
  return torch_linear_init(d_in)(key, (d_out,))


# The one linear layer of the functional models (parameters as a dict) ...
def linear(key, d_in: int, d_out: int, weight: str = "torch", bias: bool = True) -> dict:
  """`nn.Linear(d_in, d_out)`: {"w": (d_in, d_out) drawn as `weight`, "b": (d_out,)
  at PyTorch's default} (no "b" without `bias`; the key splits the same way)."""
  k_w, k_b = jax.random.split(key)
  out = {"w": weight_init(weight, d_in)(k_w, (d_in, d_out), jnp.float32)}
  if bias:
    out["b"] = torch_bias(k_b, d_in, d_out)
  return out


def apply_linear(p: dict, x: jax.Array) -> jax.Array:
  out = x @ p["w"]
  return out + p["b"] if "b" in p else out


def mlp(key, d_in: int, d_hidden: int, d_out: int, weight: str = "torch") -> list[dict]:
  """Two `linear` layers d_in -> d_hidden -> d_out (their activation: `apply_mlp`)."""
  k1, k2 = jax.random.split(key)
  return [linear(k1, d_in, d_hidden, weight), linear(k2, d_hidden, d_out, weight)]


def apply_mlp(p: list[dict], x: jax.Array, activation=jnp.tanh) -> jax.Array:
  return apply_linear(p[1], activation(apply_linear(p[0], x)))


# ... and its twin in the linen models.
def dense(d_out: int, d_in: int, weight: str = "torch", bias: bool = True,
          **kwargs) -> nn.Dense:
  """A linen `nn.Dense` initialised as `linear` (`kwargs`: name=...)."""
  return nn.Dense(d_out, use_bias=bias, kernel_init=weight_init(weight, d_in),
                  bias_init=torch_linear_init(d_in), **kwargs)


def per_item(project, n_items: int, *item_ids: jax.Array) -> tuple:
  """`project(ids)` at each array of item ids in `item_ids`, computed once per item
  of the catalogue and gathered when it holds fewer items than the rows asked for
  (on small data a batch's 2B rows repeat items), else on the rows themselves: the
  same numbers, at min(I, rows) projections. `project` must be row-wise: row k of
  `project(ids)` depends on `ids[k]` alone (no batch statistics, no dropout).
  """
  if n_items < sum(ids.shape[0] for ids in item_ids):
    every = project(jnp.arange(n_items))
    return tuple(jax.tree.map(lambda x: x[ids], every) for ids in item_ids)
  return tuple(project(ids) for ids in item_ids)


def dropout(x: jax.Array, rate, key: jax.Array | None) -> jax.Array:
  """Inverted dropout of `x` at `rate` with `key`; the identity without a key."""
  if key is None:
    return x
  keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


def l2_normalise_rows(x: jax.Array) -> jax.Array:
  """Row-wise `x / max(||x||, 1e-12)` (torch's `F.normalize`; a zero row stays zero).

  The norm of a zero row is the constant 0, so its gradient is finite (as
  torch's subgradient): `jnp.linalg.norm` differentiates to NaN there, and a
  node without training edges (an item seen only in evaluation) has such a row.
  """
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  norm = jnp.where(sq > 0, jnp.sqrt(jnp.where(sq > 0, sq, 1.0)), 0.0)
  return x / jnp.maximum(norm, 1e-12)


def first_occurrence(ids: jax.Array, weights: jax.Array) -> jax.Array:
  """(B,) 1.0 at the first valid slot of each distinct id, else 0 (jit-friendly unique)."""
  size = ids.shape[0]
  keys = jnp.where(weights > 0, ids, -1 - jnp.arange(size))
  order = jnp.argsort(keys, stable=True)
  sorted_keys = keys[order]
  first_sorted = jnp.concatenate([jnp.array([True]), sorted_keys[1:] != sorted_keys[:-1]])
  first = jnp.zeros((size,), bool).at[order].set(first_sorted)
  return (first & (weights > 0)).astype(jnp.float32)


# A one-row batch to initialise modules with: ids, and per-modality features.
ONE_ID = np.zeros((1,), np.int32)     # NumPy: importing a model must not start a JAX backend


def one_row_features(feature_dims) -> tuple[jax.Array, ...]:
  return tuple(jnp.zeros((1, d), jnp.float32) for d in feature_dims)


def id_table(n: int, dim: int) -> nn.Embed:
  """A free embedding table drawn from N(0, 0.1²), as every ID table here."""
  return nn.Embed(n, dim, embedding_init=nn.initializers.normal(0.1))


class UsersAndContent(nn.Module):
  """Base of the content models: a free user table (`user_table`, set up by the
  subclass with `id_table`) and items described by `feature_dims` features."""
  n_users: int
  embed_dim: int
  feature_dims: tuple[int, ...]

  @classmethod
  def for_spec(cls, spec) -> "UsersAndContent":
    """The module for a group's `ModelSpec` (with `n_items` where it has that field)."""
    extra = {"n_items": spec.n_items} if "n_items" in cls.__dataclass_fields__ else {}
    return cls(spec.n_users, spec.embed_dim, spec.feature_dims, **extra)

  def init_params(self, key, *ids) -> dict:
    """Parameters from a one-row call: `ids` (one `ONE_ID` per id argument), features."""
    return self.init(key, *ids, one_row_features(self.feature_dims))["params"]

  def users(self, users):
    return self.user_table(users)

  def all_users(self):
    return self.user_table.embedding
