"""Training a group of R runs at once: one compiled epoch, one compiled evaluation.

A *group* is R runs whose arrays have identical shapes. Their parameters,
optimiser states, keys, masks and hyper-parameters are stacked on a leading
runs axis; one step function is `vmap`ped over it (on one CPU device mapped
one run after another, `sharding.over_runs`) and the axis is sharded over all
devices. An epoch is one jitted call (`lax.scan` over mini-batches, with
shuffling and negative sampling on device). Early stopping is per run inside
the stacked state: a stopped run keeps its state bit for bit. Because a stopped
run still costs a full row of every vmapped step, the runs axis is compacted
(`layout.RunsLayout`) once the runs still training fit in `compact_at` of its rows.

`GroupTrainer` holds the jitted per-group programs; `train_group` runs the
loop as named steps of `GroupLoop`: restore, train an epoch, evaluate and
select, compact, checkpoint, final test. The engine calls every model hook
(models/base.py) unconditionally: a model without one has the no-op default.

Axes: `R` runs, `B` batch, `U` users, `I` items, `M` modalities, `D` embedding.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Sequence

import chex
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxrec import eval as evaluation
from jaxrec.engine import checkpoint, sampler, sharding
from jaxrec.engine.checkpoint import GroupCheckpointer
from jaxrec.engine.layout import RunsLayout
from jaxrec.graph import Graph
from jaxrec.models.base import Batch, Model, ModelInputs, ModelSpec, Run, State, StepContext

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
  first_stage_epochs: int = 0    # no evaluation or selection before its end
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
    hp: dict name -> (R,) the model's per-run hyper-parameters.
    key: (R, 2) the run's root PRNG key.
    run_key: (R, 2) a per-run key that stays constant over training.
    prepared: what the model's `prepare` built per run, {"train": ..., "eval":
      ...} from the training and evaluation inputs (None until prepared).
  """
  train_available: jax.Array
  eval_available: jax.Array
  fill: tuple[jax.Array, ...]
  hp: dict
  key: jax.Array
  run_key: jax.Array
  prepared: Any = None


@flax.struct.dataclass
class TrainState:
  params: dict
  aux: Any
  opt_state: optax.OptState
  key: jax.Array
  epoch: jax.Array
  best_params: dict
  best_aux: Any          # the selected epoch's `hooks.embed_aux(aux)`
  best_score: jax.Array
  best_epoch: jax.Array
  best_val: dict
  bad_evals: jax.Array
  stopped: jax.Array
  diverged_epoch: jax.Array


def _metric_names(ks: Sequence[int]) -> list[str]:
  return [f"{m}@{k}" for m in evaluation.METRICS for k in ks]


class GroupTrainer:
  """Jitted, sharded functions for one group shape (model, spec, settings)."""

  def __init__(self, model: Model, spec: ModelSpec, settings: TrainSettings,
               n_train: int, mesh: jax.sharding.Mesh):
    self.model, self.spec, self.settings, self.mesh = model, spec, settings, mesh
    # The model's networks and static options, built once for the group.
    self.hooks = model.make(spec)
    self.n_train = n_train
    self.n_batches = max(1, -(-n_train // settings.batch_size))
    runs = sharding.runs_sharding(mesh)
    rep = sharding.replicated(mesh)
    self.prepare = jax.jit(sharding.over_runs(self._prepare_one, mesh, in_axes=(0, None)),
                           in_shardings=(runs, rep), out_shardings=runs)
    self.init = jax.jit(sharding.over_runs(self._init_one, mesh), in_shardings=(runs,),
                        out_shardings=runs)
    # `epoch` (the group's epochs completed, a scalar) is not batched, so a
    # model's branch on the training stage is a real `lax.cond` under vmap.
    self.epoch = jax.jit(sharding.over_runs(self._epoch_one, mesh, in_axes=(0, 0, None, None)),
                         in_shardings=(runs, runs, rep, rep), out_shardings=(runs, runs),
                         donate_argnums=(0,))
    self.select = jax.jit(sharding.over_runs(self._select_one, mesh), in_shardings=(runs, runs),
                          out_shardings=runs, donate_argnums=(0,))
    self.evaluate = jax.jit(self._evaluate_all, static_argnums=(5,),
                            in_shardings=(runs, runs, runs, rep, rep), out_shardings=runs)

  # --- per-run pure functions (over the runs axis above) ---------------------
  def inputs(self, run: RunInputs, data: GroupData, split: str) -> ModelInputs:
    """The model's view of a run: `split` "train" or "eval" masks and prepared."""
    available = run.train_available if split == "train" else run.eval_available
    return ModelInputs(features=data.features, available=available, fill=run.fill,
                       graph=data.graph, prepared=run.prepared[split])

  def context(self, key, run: RunInputs, epoch, step=None) -> StepContext:
    return StepContext(key=key, run_key=run.run_key, epoch=epoch,
                       first_stage_epochs=self.settings.first_stage_epochs, step=step)

  def _prepare_one(self, run: RunInputs, data: GroupData) -> RunInputs:
    unprepared = run.replace(prepared={"train": None, "eval": None})
    prepare = lambda split: self.hooks.prepare(self.inputs(unprepared, data, split), run.hp)
    return run.replace(prepared={"train": prepare("train"), "eval": prepare("eval")})

  def _init_one(self, run: RunInputs) -> TrainState:
    init_key, train_key, aux_key = jax.random.split(run.key, 3)
    params = self.hooks.init(init_key, run.hp)
    aux = self.hooks.init_aux(aux_key, run.hp, params)
    tx = self.hooks.optimizer(run.hp, self.context(train_key, run, jnp.int32(0)))
    names = _metric_names(self.settings.ks)
    return TrainState(
        params=params, aux=aux, opt_state=tx.init(params),
        key=train_key, epoch=jnp.int32(0), best_params=params,
        best_aux=self.hooks.embed_aux(aux),
        best_score=jnp.float32(-jnp.inf), best_epoch=jnp.int32(0),
        best_val={n: jnp.float32(0.0) for n in names},
        bad_evals=jnp.int32(0), stopped=jnp.bool_(False),
        diverged_epoch=jnp.int32(0))

  def _epoch_one(self, state: TrainState, run: RunInputs, data: GroupData, epoch):
    b, n, n_batches = self.settings.batch_size, self.n_train, self.n_batches
    key, perm_key, aux_key, next_key = jax.random.split(state.key, 4)
    order = jnp.pad(jax.random.permutation(perm_key, n), (0, n_batches * b - n))
    valid = (jnp.arange(n_batches * b) < n).astype(jnp.float32)
    inputs = self.inputs(run, data, "train")
    n_items, hooks, hp = self.spec.n_items, self.hooks, run.hp
    # The group's epoch equals every training run's own (a stopped run's
    # epoch is discarded below).
    aux, epoch_measurements = hooks.pre_epoch(
        State(state.params, state.aux), Run(inputs, hp, self.context(aux_key, run, epoch)))

    def step(carry, index):
      params, opt_state, aux, key = carry
      key, neg_key, aux_step_key, loss_key = jax.random.split(key, 4)
      rows = jax.lax.dynamic_slice(order, (index * b,), (b,))
      pairs = data.train_pairs[rows]
      batch = Batch(users=pairs[:, 0], pos=pairs[:, 1],
                    neg=sampler.sample_negatives(neg_key, pairs[:, 0],
                                                 data.positives, n_items),
                    weights=jax.lax.dynamic_slice(valid, (index * b,), (b,)))
      aux, step_measurements = hooks.aux_step(
          State(params, aux), batch,
          Run(inputs, hp, self.context(aux_step_key, run, epoch, index)))
      ctx = self.context(loss_key, run, epoch, index)
      (loss, out), grads = jax.value_and_grad(
          lambda params: hooks.loss(State(params, aux), batch, Run(inputs, hp, ctx)),
          has_aux=True)(params)
      terms, aux = out if hooks.loss_updates_aux else (out, aux)
      # One run's loss, terms and measurements are scalars.
      chex.assert_rank([loss, *terms.values(), *step_measurements.values()], 0)
      updates, opt_state = hooks.optimizer(hp, ctx).update(grads, opt_state, params)
      params = optax.apply_updates(params, updates)
      # big_vision's measurements: a divergence shows in the norms first.
      norms = {"grad_norm": optax.tree_utils.tree_norm(grads),
               "param_norm": optax.tree_utils.tree_norm(params)}
      if _float_leaves(aux):
        # The auxiliary state (CLUB nets, GAR's players, generated rows) is
        # trained by the model's own rule: its norm shows a divergence too.
        norms["aux_norm"] = optax.tree_utils.tree_norm(_float_leaves(aux))
      return (params, opt_state, aux, key), _joined({"loss": loss}, terms, step_measurements,
                                                    norms)

    (params, opt_state, aux, _), terms = jax.lax.scan(
        step, (state.params, state.opt_state, aux, key), jnp.arange(n_batches))
    chex.assert_rank(list(epoch_measurements.values()), 0)
    terms = _joined(terms, epoch_measurements)
    trained = state.replace(params=params, aux=aux, opt_state=opt_state, key=next_key,
                            epoch=state.epoch + 1)
    # A run whose loss, parameters or auxiliary state went non-finite keeps its last finite state,
    # stops, and records the epoch; the other runs of the group are untouched.
    finite = jnp.all(jnp.isfinite(terms["loss"])) & jnp.all(jnp.stack(
        [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params) + _float_leaves(aux)]))
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
        best_aux=keep(self.hooks.embed_aux(state.aux), state.best_aux),
        best_score=jnp.where(improved, score, state.best_score),
        best_epoch=jnp.where(improved, state.epoch, state.best_epoch),
        best_val=keep(val, state.best_val), bad_evals=bad,
        stopped=state.stopped | (bad >= self.settings.patience))

  def _evaluate_all(self, params, embed_aux, run: RunInputs, data: GroupData, split,
                    chunk: int):
    def one(params, embed_aux, run):
      users, items = self.hooks.embed(State(params, embed_aux),
                                      Run(self.inputs(run, data, "eval"), run.hp))
      # The model boundary: one run's (U, D) users and (I, D) items, same D.
      chex.assert_shape(users, (self.spec.n_users, None))
      chex.assert_shape(items, (self.spec.n_items, users.shape[1]))
      return evaluation.evaluate(users, items, split, ks=self.settings.ks,
                                 chunk_size=chunk)
    return sharding.over_runs(one, self.mesh)(params, embed_aux, run)

  def eval_chunk(self, n_runs: int, n_candidates: int) -> int:
    """Users per evaluation chunk so that R x chunk x candidates scores fit the budget."""
    if self.settings.eval_chunk:
      return self.settings.eval_chunk
    per_device = max(1, n_runs // self.mesh.devices.size)
    return int(max(8, EVAL_BUDGET_ELEMENTS // (per_device * max(n_candidates, 1))))

  def run_eval(self, params, embed_aux, run: RunInputs, data: GroupData,
               split: evaluation.EvalSplit) -> dict:
    """Metrics of every run scored with `params` and `embed_aux`."""
    chunk = self.eval_chunk(run.key.shape[0], split.items.shape[0])
    return self.evaluate(params, embed_aux, run, data, split, chunk)


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
  best_aux: Any                   # the selected `hooks.embed_aux(aux)`
  diverged_epoch: np.ndarray
  resumed_from_epoch: int
  compactions: list[tuple[int, int]]   # (epoch, runs still training) after each




def _joined(*named: dict) -> dict:
  """One dict of the epoch's named scalars (loss terms, measurements, norms); a name twice is
  a model's mistake that would hide one of them."""
  out = {}
  for part in named:
    twice = set(out) & set(part)
    if twice:
      raise ValueError(f"the loss terms and aux measurements name {sorted(twice)} twice")
    out.update(part)
  return out


def _float_leaves(tree) -> list[jax.Array]:
  """The floating-point arrays of `tree` (an optimiser's step counts are not state to check)."""
  return [x for x in jax.tree.leaves(tree) if jnp.issubdtype(jnp.result_type(x), jnp.floating)]


def evaluation_due(settings: TrainSettings, epoch: int) -> bool:
  """Whether the group validates after `epoch` epochs: after the first stage,
  every `eval_every` epochs, and at the last epoch."""
  due = (epoch - settings.first_stage_epochs) % settings.eval_every == 0
  return epoch > settings.first_stage_epochs and due or epoch == settings.max_epochs


class GroupLoop:
  """One group's training, as the named steps `train_group` runs."""

  def __init__(self, model: Model, spec: ModelSpec, settings: TrainSettings,
               data: GroupData, runs: RunInputs, devices, checkpoint_dir: str | None):
    self.settings = settings
    mesh = sharding.runs_mesh(devices)
    self.n_runs = int(runs.key.shape[0])
    runs = sharding.pad_runs(runs, self.n_runs, sharding.padded_size(self.n_runs, mesh))
    runs = sharding.to_device(runs, sharding.runs_sharding(mesh))
    self.data = sharding.to_device(data, sharding.replicated(mesh))
    self.trainer = GroupTrainer(model, spec, settings, int(data.train_pairs.shape[0]), mesh)
    self.runs = self.trainer.prepare(runs, self.data)     # once per run, on device
    self.layout = RunsLayout(self.n_runs, mesh, self.runs)
    self.state = self.trainer.init(self.runs)
    self.epoch, self.eval_history, self.compactions = 0, [], []
    self.times = {"train": 0.0, "eval": 0.0, "first_epoch": 0.0}
    self.last_val = None          # host validation metrics of all runs, latest
    self.compiles = True          # the next epoch compiles (first, or new layout)
    self.ckpt = GroupCheckpointer(checkpoint_dir) if checkpoint_dir else None
    self.resumed_from = 0

  def restore(self) -> None:
    """Continues from the latest checkpoint, if any, in the layout it was saved in."""
    if self.ckpt:
      self.ckpt.check_room(self.state)     # before any training that it could not keep
    restored = self.ckpt.restore(self.state) if self.ckpt else None
    for skipped in (self.ckpt.skipped if self.ckpt else ()):
      print(f"checkpoint: {skipped}")
    if restored is None:
      return
    self.epoch, self.state, meta = restored
    self.eval_history, self.times = meta["eval_history"], meta["times"]
    self.compactions = [tuple(c) for c in meta.get("compactions", [])]
    if self.eval_history:
      self.last_val = {k: np.asarray(v) for k, v in self.eval_history[-1].items()
                       if k != "epoch"}
    active = meta.get("active", range(self.n_runs))
    if len(active) < self.n_runs:
      self.state = self.layout.compact(self.state, np.isin(np.arange(self.n_runs), active))
    self.resumed_from = self.epoch

  def training(self) -> bool:
    return self.epoch < self.settings.max_epochs and self.runs_training() > 0

  def train_epoch(self) -> dict:
    """One epoch of every active run; host loss terms of all runs (NaN: stopped)."""
    t0 = time.perf_counter()
    self.state, terms = self.trainer.epoch(self.state, self.layout.runs, self.data,
                                           jnp.int32(self.epoch))
    jax.block_until_ready(terms)
    self.times["first_epoch" if self.compiles else "train"] += time.perf_counter() - t0
    self.compiles = False
    self.epoch += 1
    return self.layout.all_runs(terms)

  def evaluation_due(self) -> bool:
    return evaluation_due(self.settings, self.epoch)

  def evaluate_and_select(self) -> None:
    t0 = time.perf_counter()
    val = self.trainer.run_eval(self.state.params, self.trainer.hooks.embed_aux(self.state.aux),
                                self.layout.runs, self.data, self.data.val)
    self.state = self.trainer.select(self.state, val)
    # A parked run's parameters are frozen, so its last evaluation still holds.
    self.last_val = self.layout.all_runs(val, self.last_val if self.layout.compacted else None)
    self.eval_history.append({"epoch": self.epoch, **checkpoint.to_json(self.last_val)})
    self.times["eval"] += time.perf_counter() - t0

  def runs_training(self) -> int:
    """How many runs still train (the others stopped by the rule or diverged)."""
    return int((~self.layout.rows(self.state.stopped)).sum())

  def compact(self) -> None:
    """Shortens the runs axis if so few runs still train that it pays."""
    if self.epoch >= self.settings.max_epochs:
      return
    keep = self.layout.should_compact(self.state, self.settings.compact_at)
    if keep is not None:
      self.state, self.compiles = self.layout.compact(self.state, keep), True
      self.compactions.append((self.epoch, len(self.layout.active)))

  def checkpoint(self) -> None:
    if not self.ckpt:
      return
    layout = self.layout
    saved = layout.to_device_full(layout.full_state(self.state)) if layout.compacted \
        else self.state
    self.ckpt.save(self.epoch, saved, {"eval_history": self.eval_history, "times": self.times,
                                       "active": layout.active.tolist(),
                                       "compactions": self.compactions})

  def final_test(self) -> GroupOutcome:
    """Test metrics of every run, once, with its selected params and aux."""
    layout, state = self.layout, self.state
    final = layout.full_state(state, lambda s: (s.best_params, s.best_aux, s.best_epoch,
                                                s.epoch, s.best_val, s.diverged_epoch))
    best_params, best_aux, best_epoch, epochs_trained, best_val, diverged_epoch = final
    t0 = time.perf_counter()
    selected = (layout.to_device_full((best_params, best_aux)) if layout.compacted
                else (state.best_params, state.best_aux))
    test = layout.host(self.trainer.run_eval(*selected, self.runs, self.data, self.data.test))
    self.times["eval"] += time.perf_counter() - t0
    return GroupOutcome(
        selected_epoch=best_epoch, epochs_trained=epochs_trained,
        val=best_val, test=test, eval_history=self.eval_history,
        train_seconds=self.times["train"], eval_seconds=self.times["eval"],
        first_epoch_seconds=self.times["first_epoch"], best_params=best_params,
        best_aux=best_aux, diverged_epoch=diverged_epoch,
        resumed_from_epoch=self.resumed_from, compactions=self.compactions)


def train_group(model: Model, spec: ModelSpec, settings: TrainSettings,
                data: GroupData, runs: RunInputs, *,
                devices: Sequence[jax.Device] | None = None,
                on_epoch: Callable[[int, dict], None] | None = None,
                on_start: Callable[[int], None] | None = None,
                on_eval: Callable[[int, int], None] | None = None,
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
    on_eval: called after each validation with (epoch, runs still training).
    checkpoint_dir: if given, the stacked state is saved there at every
      evaluation and training resumes from it; the result is the same as an
      uninterrupted run.
  Returns:
    A `GroupOutcome`; test metrics are computed once, with each run's
    selected parameters (also returned, stacked, as `best_params` and
    `best_aux`).
  """
  loop = GroupLoop(model, spec, settings, data, runs, devices, checkpoint_dir)
  loop.restore()
  if on_start is not None:
    on_start(loop.epoch)
  while loop.training():
    terms = loop.train_epoch()
    if on_epoch is not None:
      on_epoch(loop.epoch, terms)
    if loop.evaluation_due():
      loop.evaluate_and_select()
      if on_eval is not None:
        on_eval(loop.epoch, loop.runs_training())
      loop.compact()
      loop.checkpoint()
  return loop.final_test()
