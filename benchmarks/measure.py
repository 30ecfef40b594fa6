"""What the benchmark measures, with no flags (importable from tests and notebooks).

See benchmarks/run.py for the command and the meaning of each column.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from benchmarks import floors
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
          # MovieLens-100K with posters and plots (ratings >= 4: 55,375 of 943 users).
          "movielens": Shape(943, 1682, (1280, 384), 58.7),
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


def affine_bytes(points: dict[int, int]) -> tuple[int, int]:
  """(shared, per run) device bytes from the program bytes at two group sizes
  {R: bytes} (memory is affine in R, as jaxrec/engine/memory.py plans it)."""
  (r1, b1), (r2, b2) = sorted(points.items())[:2]
  per_run = max((b2 - b1) // (r2 - r1), 1)
  return max(b1 - r1 * per_run, 0), per_run


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
  """One (model, shape, R) point: compile, epoch and evaluation seconds, the
  device bytes of its programs (XLA's buffer assignment of the epoch and the
  evaluation, the larger; `affine_bytes` of two points gives bytes per run) and
  the counted floors (benchmarks/floors.py). Two-stage models are timed in their
  second stage, where their own model trains."""
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
  runs = sharding.pad_runs(group.runs, n_runs, sharding.padded_size(n_runs, mesh))
  runs = sharding.to_device(runs, sharding.runs_sharding(mesh))
  trainer = GroupTrainer(model, spec, settings, int(data.train_pairs.shape[0]), mesh)
  runs = trainer.prepare(runs, data)
  state = trainer.init(runs)
  epoch = jnp.int32(settings.first_stage_epochs)
  t0 = time.perf_counter()
  compiled = trainer.epoch.lower(state, runs, data, epoch).compile()
  compile_s = time.perf_counter() - t0
  state, terms = compiled(state, runs, data, epoch)   # warm-up
  jax.block_until_ready(terms)
  t0 = time.perf_counter()
  for _ in range(epochs):
    state, terms = compiled(state, runs, data, epoch)
  jax.block_until_ready(terms)
  epoch_s = (time.perf_counter() - t0) / epochs
  args = (state.params, trainer.hooks.embed_aux(state.aux), runs, data, data.test)
  evaluate = trainer.evaluate.lower(
      *args, trainer.eval_chunk(n_runs, data.test.items.shape[0])).compile()
  jax.block_until_ready(evaluate(*args))                    # warm-up
  t0 = time.perf_counter()
  jax.block_until_ready(evaluate(*args))
  eval_s = time.perf_counter() - t0
  program_bytes = max(memory._program_bytes(compiled), memory._program_bytes(evaluate))  # pylint: disable=protected-access
  flops, bytes_ = floors.epoch_counts(
      floors.work_of(model_name, spec), users=spec.n_users, items=spec.n_items,
      feature_dims=spec.feature_dims, n_train=int(data.train_pairs.shape[0]),
      batch=settings.batch_size, dim=spec.embed_dim,
      train_pairs=int(data.graph.src.shape[0]) // 2, params=floors.n_params(model, spec),
      knn_k=dict(spec.options).get("knn_k", 10),
      feature_bytes=jnp.dtype(feature_dtype).itemsize)
  flop_floor = n_runs * flops / ceilings["matmul_flops"]
  byte_floor = n_runs * bytes_ / ceilings["bandwidth_bytes"]
  return dict(model=model_name, shape=shape_name, runs=n_runs, feature_dtype=feature_dtype,
              compile_s=compile_s,
              epoch_s=epoch_s, run_epochs_per_s=n_runs / epoch_s, eval_s=eval_s,
              run_epoch_s=epoch_s / n_runs, program_bytes=program_bytes,
              flop_floor_s=flop_floor, byte_floor_s=byte_floor,
              x_floor=epoch_s / max(flop_floor, byte_floor))
