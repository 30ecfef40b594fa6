"""CLUB's variational network and its fit, shared by I3-MRec and DGMRec.

q(y | x) = N(mu(x), diag(exp(logvar(x)))) with mu = Linear-ReLU-Linear and
logvar = tanh(Linear-ReLU-Linear), PyTorch's default init: `CLUBSample` of
Cheng et al. (ICML 2020, github.com/Linear95/CLUB), the class both authors'
codes instantiate (DGMRec: ptkjw1997/DGMRec@50cdd41 src/models/dgmrec.py).
One network per modality; the networks live in a model's auxiliary state and
are fitted by their own Adam (`fit`), never by the main optimiser; the model's
loss reads them through `bounds` with their parameters held constant.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxrec import losses
from jaxrec.models.base import adam_at
from jaxrec.models.layers import apply_linear, linear

Nets = list[dict]   # one network per modality


def init(key, d_in: int, d_out: int, hidden: int) -> dict:
  """One network q(y (d_out) | x (d_in)) at PyTorch's `nn.Linear` init."""
  ks = jax.random.split(key, 4)
  return {"mu": [linear(ks[0], d_in, hidden), linear(ks[1], hidden, d_out)],
          "logvar": [linear(ks[2], d_in, hidden), linear(ks[3], hidden, d_out)]}


def init_per_modality(key, d_ins, d_out: int, hidden: int, lr: float) -> tuple[Nets, optax.OptState]:
  """One network per input width in `d_ins`, and the state of the Adam that fits them."""
  nets = [init(k, d, d_out, hidden) for k, d in zip(jax.random.split(key, len(d_ins)), d_ins)]
  return nets, adam_at(lr).init(nets)


def apply(net: dict, x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(mu, logvar) of q(· | x)."""
  mlp = lambda p: apply_linear(p[1], jax.nn.relu(apply_linear(p[0], x)))
  return mlp(net["mu"]), jnp.tanh(mlp(net["logvar"]))


def nll(nets: Nets, xs, ys) -> jax.Array:
  """Σ_m the Gaussian NLL of y_m under q_m(· | x_m): what `fit` minimises."""
  total = 0.0
  for net, x, y in zip(nets, xs, ys):
    mu, logvar = apply(net, x)
    total = total + losses.gaussian_nll(mu=mu, logvar=logvar, target=y,
                                        weights=jnp.ones(y.shape[0]))
  return total


def fit(nets: Nets, opt_state, pairs: Callable, keys: jax.Array, lr: float):
  """(nets, opt_state, the last step's NLL) after one Adam step per key, each on
  the pairs `pairs(key) -> (xs, ys)` draws (per modality (N, d_in), (N, d_out))."""
  tx = adam_at(lr)

  def step(carry, key):
    nets, opt_state = carry
    xs, ys = pairs(key)
    value, grads = jax.value_and_grad(nll)(nets, xs, ys)
    updates, opt_state = tx.update(grads, opt_state, nets)
    return (optax.apply_updates(nets, updates), opt_state), value

  (nets, opt_state), values = jax.lax.scan(step, (nets, opt_state), keys)
  return nets, opt_state, values[-1]


def bounds(nets: Nets, xs, ys, shuffled_ys, weights: jax.Array) -> jax.Array:
  """(M,) the sampled CLUB bound on I(x_m; y_m) per modality, the networks held
  constant (the loss moves x and y, never q)."""
  nets = jax.lax.stop_gradient(nets)
  out = []
  for net, x, y, y_perm in zip(nets, xs, ys, shuffled_ys):
    mu, logvar = apply(net, x)
    out.append(losses.club_upper_bound(mu=mu, logvar=logvar, target=y,
                                       shuffled_target=y_perm, weights=weights))
  return jnp.stack(out)
