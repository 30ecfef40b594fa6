"""Memory planning: how many runs of a group fit on a device, before compiling them.

XLA's own buffer assignment is the estimate: the epoch and evaluation programs
are compiled for R = 1 and R = 2 runs on one device from abstract shapes (no
data moves, nothing runs), and `memory_analysis()` gives arguments (state,
inputs, shared data), outputs and temporaries (activations, score buffers).
Memory is affine in R, so two points give `shared + R * per_run`; a group is
then cut into chunks whose per-device estimate fits the budget with a margin.
"""
from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.engine import sharding
from jaxrec.engine.train import GroupData, GroupTrainer, RunInputs
from jaxrec.errors import InputError, is_disk_full

MARGIN = 0.85     # leave room for the allocator, the runtime and fragmentation


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
  shared_bytes: int
  per_run_bytes: int

  def bytes_for(self, runs_per_device: int) -> int:
    return self.shared_bytes + runs_per_device * self.per_run_bytes


def device_budget_bytes(device: jax.Device | None = None) -> int | None:
  """The device memory free for a new group: its limit less what is in use now
  (earlier groups' buffers not yet freed, other processes' share), or None where
  JAX reports no limit (CPU)."""
  stats = (device or jax.local_devices()[0]).memory_stats()
  if not stats or "bytes_limit" not in stats:
    return None
  return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


def is_out_of_memory(err: BaseException) -> bool:
  """Whether `err` is XLA running out of device memory (RESOURCE_EXHAUSTED).

  A full disk is not: TensorStore (the checkpoint writer) reports it as
  RESOURCE_EXHAUSTED too, and retraining in smaller chunks cannot help it.
  """
  text = str(err)
  return (("RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower())
          and not is_disk_full(err))


def host_memory_bytes() -> int:
  return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _program_bytes(compiled) -> int:
  stats = compiled.memory_analysis()
  peak = getattr(stats, "peak_memory_in_bytes", 0) or 0
  total = (stats.argument_size_in_bytes + stats.output_size_in_bytes
           + stats.temp_size_in_bytes - stats.alias_size_in_bytes)
  return int(max(peak, total))


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
                      if not isinstance(x, jax.ShapeDtypeStruct) else x, tree)


EPOCH = jax.ShapeDtypeStruct((), jnp.int32)   # the epoch argument, abstract


def estimate(model, spec, settings, data: GroupData, one_run: RunInputs) -> MemoryEstimate:
  """Shared and per-run device bytes of a group (peak of the epoch and evaluation)."""
  mesh = sharding.runs_mesh(jax.devices()[:1])
  trainer = GroupTrainer(model, spec, settings, int(data.train_pairs.shape[0]), mesh)
  data_abs = _abstract(data)
  points = []
  for n_runs in (1, 2):
    runs = jax.eval_shape(trainer.prepare, _abstract(sharding.pad_runs(one_run, 1, n_runs)),
                          data_abs)
    state = jax.eval_shape(trainer.init, runs)
    epoch = trainer.epoch.lower(state, runs, data_abs, EPOCH).compile()
    chunk = trainer.eval_chunk(n_runs, data.test.items.shape[0])
    evaluate = trainer.evaluate.lower(state.params, trainer.hooks.embed_aux(state.aux), runs,
                                      data_abs, data_abs.test, chunk).compile()
    points.append(max(_program_bytes(epoch), _program_bytes(evaluate)))
  per_run = max(points[1] - points[0], 1)
  return MemoryEstimate(shared_bytes=max(points[0] - per_run, 0), per_run_bytes=per_run)


def runs_per_chunk(est: MemoryEstimate, n_runs: int, budget_bytes: int,
                   n_devices: int = 1, margin: float = MARGIN) -> int:
  """The most runs per chunk whose per-device estimate fits `margin * budget`.

  Raises InputError (with the numbers) if not even one run fits.
  """
  usable = int(margin * budget_bytes)
  per_device = (usable - est.shared_bytes) // est.per_run_bytes
  if per_device < 1:
    raise InputError(
        f"one run needs about {_gib(est.bytes_for(1))} (shared {_gib(est.shared_bytes)} + "
        f"{_gib(est.per_run_bytes)} per run) but the budget is {_gib(budget_bytes)} "
        f"x {margin} margin; use a smaller model, batch or evaluation chunk, or a "
        "larger device")
  return int(min(n_runs, per_device * n_devices))


def chunk(items: list, size: int) -> list[list]:
  """Consecutive chunks of `size`, balanced so the last one is not tiny."""
  n_chunks = -(-len(items) // size)
  bounds = np.linspace(0, len(items), n_chunks + 1).round().astype(int)
  return [items[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _gib(n: int) -> str:
  return f"{n / 2**30:.3f} GiB"


def describe(est: MemoryEstimate) -> str:
  return f"~{_gib(est.shared_bytes)} shared + {_gib(est.per_run_bytes)} per run"
