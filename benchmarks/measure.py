"""What the benchmark measures, with no flags (importable from tests and notebooks).

See benchmarks/run.py for the command and the meaning of each column.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from jaxrec.config import make_config
from jaxrec.engine import memory, sharding
from jaxrec.engine.inputs import build_group
from jaxrec.engine.train import GroupTrainer


@dataclasses.dataclass(frozen=True)
class Shape:
  users: int
  items: int
  dims: tuple[int, ...]
  per_user: float          # interactions per user (TikTok 7.4, Baby 8.3)


SHAPES = {"tiktok": Shape(9308, 6710, (128, 128), 7.4),
          "baby": Shape(19445, 7050, (4096, 384), 8.3),
          "tiny": Shape(300, 200, (16, 8), 6.0)}     # for dry runs (benchmarks/gpu.py)


def measure_ceilings() -> dict:
  """Measured f32 matmul FLOP/s and copy bandwidth (bytes read + written per s)."""
  n = 4096 if jax.default_backend() != "cpu" else 1536
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  t0, reps = time.perf_counter(), 10
  for _ in range(reps):
    out = matmul(a)
  out.block_until_ready()
  flops = 2 * n ** 3 * reps / (time.perf_counter() - t0)
  big = jnp.ones((64 * 2 ** 20,), jnp.float32)                  # 256 MiB
  copy = jax.jit(lambda x: x + 1.0)
  copy(big).block_until_ready()
  t0 = time.perf_counter()
  for _ in range(reps):
    out = copy(big)
  out.block_until_ready()
  bandwidth = 2 * big.nbytes * reps / (time.perf_counter() - t0)
  return {"matmul_flops": flops, "bandwidth_bytes": bandwidth}


def epoch_counts(model: str, shape: Shape, n_train: int, batch: int, dim: int,
                 n_edges: int, feature_bytes: int = 4) -> tuple[float, float]:
  """(FLOPs, bytes) one run needs per epoch, counted from the algorithm.

  FLOPs: matrix products (forward, and the weight gradient: x2 forward), the
  per-modality scoring and, for I3-MRec, graph propagation. Bytes: the fewest
  each step must touch: feature rows read, embeddings read and gradients
  written, and Adam's dense update (read param, grad, m, v; write param, m, v)
  of every parameter, which dominates for large user tables. `feature_bytes`
  is 2 for features stored in bfloat16.
  """
  n_batches = -(-n_train // batch)
  feat = sum(shape.dims)
  n_mod = len(shape.dims)
  projected = shape.items if model == "i3mrec" or shape.items < 2 * batch else 2 * batch
  params = shape.users * dim + feat * dim + n_mod * dim
  flops = 3 * 2 * projected * feat * dim + 3 * 2 * 2 * batch * n_mod * dim
  bytes_ = (feature_bytes * projected * feat + 4 * 3 * batch * dim * (1 + 2 * n_mod)
            + 4 * 7 * params)
  if model == "i3mrec":
    nodes = shape.users + shape.items
    flops += 3 * n_mod * 3 * 2 * n_edges * dim          # 3 layers, fwd + bwd
    bytes_ += 4 * 3 * n_mod * 3 * (2 * n_edges * dim + nodes * dim)
  return n_batches * flops, n_batches * bytes_


def scaling_shapes() -> dict[str, Shape]:
  """TikTok shape with items x0.5..x4 (same interactions per user), and widths 32..512."""
  base = SHAPES["tiktok"]
  out = {f"items={n}": dataclasses.replace(base, items=n)
         for n in (base.items // 2, base.items, base.items * 2, base.items * 4)}
  out.update({f"width=2x{d}": dataclasses.replace(base, dims=(d, d))
              for d in (32, 64, 256, 512)})
  return out


def run_point(model_name: str, shape_name: str, shape: Shape, n_runs: int, epochs: int,
              ceilings: dict, feature_dtype: str = "float32") -> dict:
  configs = [make_config(model=model_name, feature_dtype=feature_dtype,
                         synthetic_users=shape.users,
                         synthetic_items=shape.items, synthetic_dims=shape.dims,
                         synthetic_interactions=shape.per_user,
                         seed=s, setting=("fm", "mm")[s % 2], missing_rate=0.5)
             for s in range(n_runs)]
  group = build_group(configs)
  model, spec, settings = group.model, group.spec, group.settings
  mesh = sharding.runs_mesh()
  data = sharding.to_device(group.data, sharding.replicated(mesh))
  est = memory.estimate(model, spec, settings, data, group.one_run())
  runs = sharding.pad_runs(group.runs, n_runs, sharding.padded_size(n_runs, mesh))
  runs = sharding.to_device(runs, sharding.runs_sharding(mesh))
  trainer = GroupTrainer(model, spec, settings, int(data.train_pairs.shape[0]), mesh)
  runs = trainer.prepare(runs, data)
  state = trainer.init(runs)
  t0 = time.perf_counter()
  compiled = trainer.epoch.lower(state, runs, data, jnp.int32(0)).compile()
  compile_s = time.perf_counter() - t0
  state, terms = compiled(state, runs, data, jnp.int32(0))   # warm-up
  jax.block_until_ready(terms)
  t0 = time.perf_counter()
  for _ in range(epochs):
    state, terms = compiled(state, runs, data, jnp.int32(0))
  jax.block_until_ready(terms)
  epoch_s = (time.perf_counter() - t0) / epochs
  evaluate = lambda: trainer.run_eval(state.params, model.embed_aux(state.aux), runs,
                                      data, data.test)
  jax.block_until_ready(evaluate())                         # compiles
  t0 = time.perf_counter()
  jax.block_until_ready(evaluate())
  eval_s = time.perf_counter() - t0
  flops, bytes_ = epoch_counts(model_name, shape, int(data.train_pairs.shape[0]),
                               settings.batch_size,
                               spec.embed_dim, int(data.graph.src.shape[0]) // 2,
                               feature_bytes=jnp.dtype(feature_dtype).itemsize)
  flop_floor = n_runs * flops / ceilings["matmul_flops"]
  byte_floor = n_runs * bytes_ / ceilings["bandwidth_bytes"]
  return dict(model=model_name, shape=shape_name, runs=n_runs, feature_dtype=feature_dtype,
              compile_s=compile_s,
              epoch_s=epoch_s, run_epochs_per_s=n_runs / epoch_s, eval_s=eval_s,
              bytes_per_run=est.per_run_bytes, shared_bytes=est.shared_bytes,
              flop_floor_s=flop_floor, byte_floor_s=byte_floor,
              x_floor=epoch_s / max(flop_floor, byte_floor))
