"""Training a group of R runs at once: one compiled epoch, one compiled evaluation.

A *group* is R runs whose arrays have identical shapes. Their parameters,
optimiser states, keys, masks and hyper-parameters are stacked on a leading
runs axis; one step function is `vmap`ped over it and the axis is sharded over
all devices. An epoch is one jitted call (`lax.scan` over mini-batches, with
shuffling and negative sampling on device). Early stopping is per run inside
the stacked state: a stopped run keeps its state bit for bit. Because a stopped
run still costs a full row of every vmapped step, the runs axis is compacted
(`RunsLayout`) once the runs still training fit in `compact_at` of its rows.

Axes: `R` runs, `B` batch, `U` users, `I` items, `M` modalities, `D` embedding.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec import eval as evaluation
from jaxrec.engine import checkpoint, sampler, sharding
from jaxrec.engine.checkpoint import GroupCheckpointer
from jaxrec.graph import Graph
from jaxrec.models.base import Batch, Model, ModelInputs, ModelSpec

EVAL_BUDGET_ELEMENTS = 1 << 25   # scores held per device during evaluation
NOT_TRAINED = float("nan")        # loss terms of a run that has stopped


@dataclasses.dataclass(frozen=True)
class TrainSettings:
  """Static training settings shared by every run of a group."""
  batch_size: int = 2048
  max_epochs: int = 1000
  eval_every: int = 10
  patience: int = 3
  ks: tuple[int, ...] = (10, 20, 50)
  select_metric: str = "ndcg@10"
  eval_chunk: int | None = None
  pretrain_epochs: int = 0       # first stage: no evaluation or selection before its end
  # Compact the runs axis when the runs still training fit in this fraction of
  # its rows (one recompilation each time; 0 = never). 0.75 bounds the
  # recompilations to log(R)/log(4/3) and kept 75-95% of the ideal saving on the
  # TikTok baselines' stopping patterns (BENCHMARKS.md).
  compact_at: float = 0.75


@flax.struct.dataclass
class GroupData:
  """Data shared by every run of a group (replicated, `in_axes=None`)."""
  features: tuple[jax.Array, ...]
  train_pairs: jax.Array
  positives: sampler.PositiveIndex
  graph: Graph
  val: evaluation.EvalSplit
  test: evaluation.EvalSplit


@flax.struct.dataclass
class RunInputs:
  """Per-run inputs, each with a leading R axis.

  Attributes:
    train_available: (R, I, M) bool modality observed, as training sees it.
    eval_available: (R, I, M) bool modality observed, as evaluation sees it.
    fill: per modality (R, d_m) fill vector.
    hp: dict name -> (R,) hyper-parameters; `hp["fixed_key"]` is a per-run key
      that stays constant over training.
    key: (R, 2) the run's root PRNG key.
  """
  train_available: jax.Array
  eval_available: jax.Array
  fill: tuple[jax.Array, ...]
  hp: dict
  key: jax.Array


@flax.struct.dataclass
class TrainState:
  params: dict
  aux: Any
  opt_state: optax.OptState
  key: jax.Array
  epoch: jax.Array
  best_params: dict
  best_aux: Any          # the selected epoch's `model.embed_aux(aux)`, {} without it
  best_score: jax.Array
  best_epoch: jax.Array
  best_val: dict
  bad_evals: jax.Array
  stopped: jax.Array
  diverged_epoch: jax.Array


def optimizer(learning_rate) -> optax.GradientTransformation:
  """Adam with the learning rate in the state, so each run carries its own."""
  return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)




def _metric_names(ks: Sequence[int]) -> list[str]:
  return [f"{m}@{k}" for m in evaluation.METRICS for k in ks]


class GroupTrainer:
  """Jitted, sharded functions for one group shape (model, spec, settings)."""

  def __init__(self, model: Model, spec: ModelSpec, settings: TrainSettings,
               n_train: int, mesh: jax.sharding.Mesh):
    self.model, self.spec, self.settings, self.mesh = model, spec, settings, mesh
    self.n_train = n_train
    self.n_batches = max(1, -(-n_train // settings.batch_size))
    runs = sharding.runs_sharding(mesh)
    rep = sharding.replicated(mesh)
    self.init = jax.jit(jax.vmap(self._init_one), in_shardings=(runs,),
                        out_shardings=runs)
    # `epoch` (the group's epochs completed, a scalar) is not batched, so a
    # model's branch on the training stage is a real `lax.cond` under vmap.
    self.epoch = jax.jit(jax.vmap(self._epoch_one, in_axes=(0, 0, None, None)),
                         in_shardings=(runs, runs, rep, rep), out_shardings=(runs, runs),
                         donate_argnums=(0,))
    self.select = jax.jit(jax.vmap(self._select_one), in_shardings=(runs, runs),
                          out_shardings=runs, donate_argnums=(0,))
    self.evaluate = jax.jit(self._evaluate_all, static_argnums=(5,),
                            in_shardings=(runs, runs, runs, rep, rep), out_shardings=runs)

  # --- per-run pure functions (vmapped above) -------------------------------
  def _init_one(self, run: RunInputs) -> TrainState:
    init_key, train_key, aux_key = jax.random.split(run.key, 3)
    params = self.model.init(init_key, self.spec, run.hp)
    aux = (self.model.init_aux(aux_key, self.spec, run.hp, params)
           if self.model.init_aux else {})
    names = _metric_names(self.settings.ks)
    return TrainState(
        params=params, aux=aux, opt_state=optimizer(run.hp["lr"]).init(params),
        key=train_key, epoch=jnp.int32(0), best_params=params,
        best_aux=self.embed_aux(aux),
        best_score=jnp.float32(-jnp.inf), best_epoch=jnp.int32(0),
        best_val={n: jnp.float32(0.0) for n in names},
        bad_evals=jnp.int32(0), stopped=jnp.bool_(False),
        diverged_epoch=jnp.int32(0))

  def _epoch_one(self, state: TrainState, run: RunInputs, data: GroupData, epoch):
    b, n, n_batches = self.settings.batch_size, self.n_train, self.n_batches
    key, perm_key, aux_key, next_key = jax.random.split(state.key, 4)
    order = jnp.pad(jax.random.permutation(perm_key, n), (0, n_batches * b - n))
    valid = (jnp.arange(n_batches * b) < n).astype(jnp.float32)
    inputs = ModelInputs(features=data.features, available=run.train_available,
                         fill=run.fill, graph=data.graph)
    tx = optimizer(run.hp["lr"])
    n_items = self.spec.n_items
    model = self.model
    # The group's epoch equals every training run's own (a stopped run's
    # epoch is discarded below).
    hp = {**run.hp, "epoch": epoch.astype(jnp.float32),
          "pretrain_epochs": jnp.float32(self.settings.pretrain_epochs)}
    aux = state.aux
    if model.pre_epoch:
      aux = model.pre_epoch(state.params, aux, inputs, hp, aux_key, self.spec)

    def step(carry, index):
      params, opt_state, aux, key = carry
      key, neg_key, aux_step_key, loss_key = jax.random.split(key, 4)
      rows = jax.lax.dynamic_slice(order, (index * b,), (b,))
      pairs = data.train_pairs[rows]
      batch = Batch(users=pairs[:, 0], pos=pairs[:, 1],
                    neg=sampler.sample_negatives(neg_key, pairs[:, 0],
                                                 data.positives, n_items),
                    weights=jax.lax.dynamic_slice(valid, (index * b,), (b,)))
      if model.aux_step:
        aux = model.aux_step(params, aux, batch, inputs, hp, aux_step_key, self.spec)
      extra = {"aux": aux} if model.init_aux else {}
      (loss, terms), grads = jax.value_and_grad(model.loss, has_aux=True)(
          params, batch, inputs, hp, loss_key, self.spec, **extra)
      updates, opt_state = tx.update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      return (params, opt_state, aux, key), dict(loss=loss, **terms)

    (params, opt_state, aux, _), terms = jax.lax.scan(
        step, (state.params, state.opt_state, aux, key), jnp.arange(n_batches))
    trained = state.replace(params=params, aux=aux, opt_state=opt_state, key=next_key,
                            epoch=state.epoch + 1)
    # A run whose loss or parameters went non-finite keeps its last finite state,
    # stops, and records the epoch; the other runs of the group are untouched.
    finite = jnp.all(jnp.isfinite(terms["loss"])) & jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
    diverged = ~finite & ~state.stopped
    frozen = state.stopped | diverged
    new_state = jax.tree.map(lambda old, new: jnp.where(frozen, old, new), state, trained)
    new_state = new_state.replace(
        stopped=frozen,
        diverged_epoch=jnp.where(diverged, state.epoch + 1, state.diverged_epoch))
    # A stopped run was not trained: its terms are NaN, not a discarded epoch's.
    return new_state, jax.tree.map(
        lambda t: jnp.where(state.stopped, NOT_TRAINED, jnp.mean(t)), terms)

  def _select_one(self, state: TrainState, val: dict) -> TrainState:
    """Early stopping on the selection metric (strict improvement, patience)."""
    score = val[self.settings.select_metric]
    improved = (score > state.best_score) & ~state.stopped
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(improved, a, b), new, old)
    bad = jnp.where(improved, 0, state.bad_evals + jnp.where(state.stopped, 0, 1))
    return state.replace(
        best_params=keep(state.params, state.best_params),
        best_aux=keep(self.embed_aux(state.aux), state.best_aux),
        best_score=jnp.where(improved, score, state.best_score),
        best_epoch=jnp.where(improved, state.epoch, state.best_epoch),
        best_val=keep(val, state.best_val), bad_evals=bad,
        stopped=state.stopped | (bad >= self.settings.patience))

  def embed_aux(self, aux):
    """The part of the auxiliary state that `embed` reads ({} for most models)."""
    return self.model.embed_aux(aux) if self.model.embed_aux else {}

  def _evaluate_all(self, params, embed_aux, run: RunInputs, data: GroupData, split,
                    chunk: int):
    def one(params, embed_aux, run):
      extra = {"aux": embed_aux} if self.model.embed_aux else {}
      users, items = self.model.embed(params, ModelInputs(
          features=data.features, available=run.eval_available, fill=run.fill,
          graph=data.graph), run.hp, self.spec, **extra)
      return evaluation.evaluate(users, items, split, ks=self.settings.ks,
                                 chunk_size=chunk)
    return jax.vmap(one)(params, embed_aux, run)

  def eval_chunk(self, n_runs: int, n_candidates: int) -> int:
    """Users per evaluation chunk so that R x chunk x candidates scores fit the budget."""
    if self.settings.eval_chunk:
      return self.settings.eval_chunk
    per_device = max(1, n_runs // self.mesh.devices.size)
    return int(max(8, EVAL_BUDGET_ELEMENTS // (per_device * max(n_candidates, 1))))

  def run_eval(self, params, embed_aux, run: RunInputs, data: GroupData,
               split: evaluation.EvalSplit) -> dict:
    """Metrics of every run scored with `params` (and `embed_aux`, see `embed_aux`)."""
    chunk = self.eval_chunk(run.key.shape[0], split.items.shape[0])
    return self.evaluate(params, embed_aux, run, data, split, chunk)


class RunsLayout:
  """Which runs the device rows hold, and the final states of runs taken off them.

  Rows are the first `len(active)` entries of the runs axis (padded to the
  device count with copies of the last). `compact` gathers the rows of runs
  still training into a shorter axis and parks the stopped runs' states on the
  host, where they no longer change; `merge` puts them back in run order.
  """

  def __init__(self, n_runs: int, mesh: jax.sharding.Mesh, runs: RunInputs):
    self.n_runs, self.mesh = n_runs, mesh
    self.active = np.arange(n_runs)
    self.runs = runs              # device RunInputs of the active rows
    self.parked = None            # host TrainState of all runs, once any is parked
    self._gather = jax.jit(lambda tree, rows: jax.tree.map(lambda x: x[rows], tree),
                           out_shardings=sharding.runs_sharding(mesh))

  @property
  def compacted(self) -> bool:
    return self.parked is not None

  def host(self, tree):
    """Host copy of a tree on the full (uncompacted) axis, padding dropped."""
    return jax.tree.map(lambda x: x[:self.n_runs], sharding.to_host(tree))

  def rows(self, tree):
    """Host copy of a device tree's rows that hold active runs."""
    return jax.tree.map(lambda x: x[:len(self.active)], sharding.to_host(tree))

  def merge(self, base, active_rows):
    """`base` (host, all runs) with the active runs' rows replaced."""
    def put(full, part):
      full = np.array(full, copy=True)
      full[self.active] = part
      return full
    return jax.tree.map(put, base, active_rows)

  def full_state(self, state: TrainState, pick=lambda s: s):
    """Host `pick(state)` for all runs, in run order."""
    if not self.compacted:
      return self.host(pick(state))
    return self.merge(pick(self.parked), self.rows(pick(state)))

  def should_compact(self, state: TrainState, compact_at: float) -> np.ndarray | None:
    """The active rows to keep, if so few still train that compacting pays."""
    keep = ~self.rows(state.stopped)
    n_rows = sharding.padded_size(len(self.active), self.mesh)
    if not keep.any() or sharding.padded_size(int(keep.sum()), self.mesh) > compact_at * n_rows:
      return None
    return keep

  def compact(self, state: TrainState, keep: np.ndarray) -> TrainState:
    """Keeps the rows `keep` (bool over active rows); parks the others' states."""
    self.parked = self.full_state(state)
    kept = np.flatnonzero(keep)
    rows = sharding.pad_runs(kept, len(kept), sharding.padded_size(len(kept), self.mesh))
    rows = sharding.to_device(rows, sharding.replicated(self.mesh))
    self.active = self.active[kept]
    self.runs = self._gather(self.runs, rows)
    return self._gather(state, rows)

  def all_runs(self, tree, parked_values=None):
    """Host arrays of all runs from a device tree of active rows; the parked
    runs take `parked_values` (a host tree of all runs), or NaN."""
    rows = self.rows(tree)
    if parked_values is None:
      parked_values = jax.tree.map(
          lambda x: np.full((self.n_runs,) + x.shape[1:], np.nan, x.dtype), rows)
    return self.merge(parked_values, rows)

  def to_device_full(self, host_tree):
    """A host tree of all runs, padded and sharded like the uncompacted runs axis."""
    target = sharding.padded_size(self.n_runs, self.mesh)
    return sharding.to_device(sharding.pad_runs(host_tree, self.n_runs, target),
                              sharding.runs_sharding(self.mesh))


@dataclasses.dataclass
class GroupOutcome:
  """Host-side results of a group: arrays with a leading R axis."""
  selected_epoch: np.ndarray
  epochs_trained: np.ndarray
  val: dict
  test: dict
  eval_history: list[dict]
  train_seconds: float
  eval_seconds: float
  first_epoch_seconds: float      # epochs that compiled: the first, and the first
                                  # after each compaction of the runs axis
  best_params: dict
  best_aux: Any                   # the selected `model.embed_aux(aux)` ({} without)
  diverged_epoch: np.ndarray
  resumed_from_epoch: int
  compactions: list[tuple[int, int]]   # (epoch, runs still training) after each


def train_group(model: Model, spec: ModelSpec, settings: TrainSettings,
                data: GroupData, runs: RunInputs, *,
                devices: Sequence[jax.Device] | None = None,
                on_epoch: Callable[[int, dict], None] | None = None,
                on_start: Callable[[int], None] | None = None,
                checkpoint_dir: str | None = None) -> GroupOutcome:
  """Trains R runs together until every run has stopped or max_epochs.

  Args:
    model, spec, settings: what to train and how (shared by the group).
    data: shared `GroupData`.
    runs: per-run `RunInputs` with leading axis R.
    devices: devices to shard the runs axis over (default: all).
    on_epoch: called after each epoch with (epoch, host terms dict of (R,)).
    on_start: called once with the epoch training starts after (0, or the
      epoch of the checkpoint it resumed from).
    checkpoint_dir: if given, the stacked state is saved there at every
      evaluation and training resumes from it; the result is the same as an
      uninterrupted run.
  Returns:
    A `GroupOutcome`; test metrics are computed once, with each run's
    selected parameters (also returned, stacked, as `best_params` and
    `best_aux`).
  """
  mesh = sharding.runs_mesh(devices)
  n_runs = int(runs.key.shape[0])
  target = sharding.padded_size(n_runs, mesh)
  runs = sharding.pad_runs(runs, n_runs, target)
  runs = sharding.to_device(runs, sharding.runs_sharding(mesh))
  data = sharding.to_device(data, sharding.replicated(mesh))
  trainer = GroupTrainer(model, spec, settings, int(data.train_pairs.shape[0]), mesh)
  layout = RunsLayout(n_runs, mesh, runs)

  state = trainer.init(runs)
  epoch, eval_history = 0, []
  times = {"train": 0.0, "eval": 0.0, "first_epoch": 0.0}
  compactions = []                    # (epoch, runs still training) at each compaction
  last_val = None                     # host validation metrics of all runs, latest
  ckpt = GroupCheckpointer(checkpoint_dir) if checkpoint_dir else None
  restored = ckpt.restore(state) if ckpt else None
  if restored is not None:
    epoch, state, meta = restored
    eval_history = meta["eval_history"]
    times = meta["times"]
    compactions = [tuple(c) for c in meta.get("compactions", [])]
    if eval_history:
      last_val = {k: np.asarray(v) for k, v in eval_history[-1].items() if k != "epoch"}
    if len(meta.get("active", range(n_runs))) < n_runs:   # same layout as before
      state = layout.compact(state, np.isin(np.arange(n_runs), meta["active"]))
  resumed_from = epoch
  if on_start is not None:
    on_start(epoch)
  compiles = True                     # the next epoch compiles (first, or new layout)

  while epoch < settings.max_epochs and not layout.rows(state.stopped).all():
    t0 = time.perf_counter()
    state, terms = trainer.epoch(state, layout.runs, data, jnp.int32(epoch))
    jax.block_until_ready(terms)
    elapsed = time.perf_counter() - t0
    times["first_epoch" if compiles else "train"] += elapsed
    compiles = False
    epoch += 1
    if on_epoch is not None:
      on_epoch(epoch, layout.all_runs(terms))
    due = (epoch - settings.pretrain_epochs) % settings.eval_every == 0
    if epoch > settings.pretrain_epochs and due or epoch == settings.max_epochs:
      t0 = time.perf_counter()
      val = trainer.run_eval(state.params, trainer.embed_aux(state.aux), layout.runs,
                             data, data.val)
      state = trainer.select(state, val)
      # A parked run's parameters are frozen, so its last evaluation still holds.
      last_val = layout.all_runs(val, last_val if layout.compacted else None)
      eval_history.append({"epoch": epoch, **checkpoint.to_json(last_val)})
      keep = (layout.should_compact(state, settings.compact_at)
              if epoch < settings.max_epochs else None)
      if keep is not None:
        state, compiles = layout.compact(state, keep), True
        compactions.append((epoch, len(layout.active)))
      times["eval"] += time.perf_counter() - t0
      if ckpt:
        saved = layout.to_device_full(layout.full_state(state)) if layout.compacted else state
        ckpt.save(epoch, saved, {"eval_history": eval_history, "times": times,
                                 "active": layout.active.tolist(),
                                 "compactions": compactions})

  final = layout.full_state(state, lambda s: (s.best_params, s.best_aux, s.best_epoch,
                                              s.epoch, s.best_val, s.diverged_epoch))
  best_params, best_aux, best_epoch, epochs_trained, best_val, diverged_epoch = final
  t0 = time.perf_counter()
  selected = (layout.to_device_full((best_params, best_aux)) if layout.compacted
              else (state.best_params, state.best_aux))
  test = layout.host(trainer.run_eval(*selected, runs, data, data.test))
  times["eval"] += time.perf_counter() - t0
  return GroupOutcome(
      selected_epoch=best_epoch, epochs_trained=epochs_trained,
      val=best_val, test=test, eval_history=eval_history,
      train_seconds=times["train"], eval_seconds=times["eval"],
      first_epoch_seconds=times["first_epoch"], best_params=best_params,
      best_aux=best_aux,
      diverged_epoch=diverged_epoch, resumed_from_epoch=resumed_from,
      compactions=compactions)
