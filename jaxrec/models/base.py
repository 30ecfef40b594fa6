"""The one interface between models and the engine.

A `Model` is its declared hyper-parameters and `make(spec)`: called once per
group with the group's static `ModelSpec`, it builds what depends only on the
group (networks, static options, shapes) and returns the group's `Hooks`,
pure functions with `spec` and those static pieces captured. The engine never
asks what a model has; a hook a model leaves out has the no-op default.

Hooks come in two families, each with one argument order:

  setup, (key, hp, what it builds on):
    init(key, hp)                    -> params
    init_aux(key, hp, params)        -> aux        ({} by default)
    prepare(inputs, hp)              -> prepared   ({} by default)
    optimizer(hp, ctx)               -> optax transform (Adam at hp["lr"])
  steps, (state, [batch], run):
    pre_epoch(state, run)            -> (aux, measurements)   ((state.aux, {}))
    aux_step(state, batch, run)      -> (aux, measurements)   ((state.aux, {}))
    loss(state, batch, run)          -> (scalar, {term: scalar})
                                        (scalar, ({term: scalar}, aux)) where
                                        `loss_updates_aux` (below)
    embed(state, run)                -> (users (U, D), items (I, D))
  embed_aux(aux)                     -> the part of aux `embed` reads ({})

`state` is a `State(params, aux)`; `run` is a `Run(inputs, hp, ctx)`. In
`embed`, `state.aux` is `embed_aux(aux)` of the same epoch (the engine keeps
that tree of the selected epoch beside the selected params) and `run.ctx` is
None: evaluation draws nothing.

`params` move only by the model's own optimiser on the gradient of `loss`;
`aux` (I3-MRec's CLUB networks, GAR's two players) moves only in `pre_epoch`
(once per epoch) and `aux_step` (every step, before the main update), by
whatever rule the model writes there, or, where `Hooks.loss_updates_aux` is
set, by the loss itself: it returns the state its own forward pass leaves
behind (Flax's batch statistics, the `has_aux` idiom of the Flax examples),
so a model does not run that pass twice. Their `measurements` ({name: scalar})
join the epoch's curves beside the loss terms (an `aux_step`'s averaged over
the epoch's steps like them).

`prepare` runs once per run on the device before training, vmapped over the
group, on the run's training inputs and again on its evaluation inputs; its
result is `inputs.prepared` in every later call. It is where a run derives
what depends on its own masked features (an item-item kNN graph), never a
Python loop over runs on the host.

`hp` is a dict of this run's per-run hyper-parameters (scalars; traced, one per
run), exactly those the model declares with `per_run=True`. Hyper-parameters
that change shapes or control flow (`per_run=False`) are static: `make` reads
them from `spec` with `spec.option(HPARAM)`; an option that names a modality
(`modality_option`) gives its position with `spec.modality(HPARAM)`. `ctx` is
the `StepContext`: keys, and the group's epoch and training stage. A two-stage
model names the hyper-parameter that sets its first stage's length
(`Model.first_stage_epochs`); the engine reads it from there, never by name.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxrec.errors import InputError


@dataclasses.dataclass(frozen=True)
class HParam:
  """One hyper-parameter a model reads, declared where it is used.

  Attributes:
    name: the field name (`--set NAME=V`, or `--set MODEL.NAME=V` for one model).
    default: its value when a config does not set it.
    source: where the default comes from (paper, authors' code, our choice).
    kind: float, int, str or bool.
    per_run: True: varies inside one compiled group (a traced per-run scalar
      in `hp`); False: static, so runs that differ in it are separate groups
      (read with `spec.option`).
    low, high: the allowed closed range of a number (None = unbounded);
      `low_open` / `high_open` make a bound strict (e.g. a learning rate > 0).
    choices: the allowed values of a string.
    help: one line for `--help` and error messages.
    off: the value that switches the model's own mechanism off (MILK's β = 0, an
      ablation switch at 0, GAR's α = 1), or None. A run at it is an ablation
      variant, never a tuning point: no search space may contain it, and a report
      shows such runs as their own row (jaxrec.analysis.select). Declared for the
      weights and switches that define a model, not for regularisers.
    names_modality: the value is the name of one of the data's modalities
      (`modality_option`), checked against the data before anything compiles.
  """
  name: str
  default: Any
  source: str
  kind: type = float
  per_run: bool = True
  low: float | None = None
  high: float | None = None
  low_open: bool = False
  high_open: bool = False
  choices: tuple = ()
  help: str = ""
  off: Any = None

  def __post_init__(self):
    if self.off is not None:
      self.check(self.off)
      if self.off == self.default:
        raise ValueError(f"{self.name}: off={self.off!r} is its default; the default is the "
                         "model with its mechanism on")

  names_modality: bool = False

  def is_off(self, value: Any) -> bool:
    """Whether `value` switches the mechanism this parameter defines off."""
    return self.off is not None and value is not None and value == self.off

  def interval(self) -> str:
    """The allowed range of a number in interval notation ("(0, 1)", "[1, ∞)"), or ""."""
    if self.low is None and self.high is None:
      return ""
    low = "−∞" if self.low is None else f"{self.low:g}"
    high = "∞" if self.high is None else f"{self.high:g}"
    return (f"{'(' if self.low_open or self.low is None else '['}{low}, "
            f"{high}{')' if self.high_open or self.high is None else ']'}")

  def parse(self, value: Any) -> Any:
    """`value` (a Python value or flag text) as this parameter's kind, checked."""
    if isinstance(value, str) and self.kind is not str:
      text = value.strip()
      try:
        value = _parse_bool(text) if self.kind is bool else self.kind(text)
      except ValueError:
        raise InputError(f"{self.name}={value!r}: expected {self.kind.__name__}") from None
    if self.kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
      value = float(value)
    self.check(value)
    return value

  def check(self, value: Any) -> None:
    """Raises InputError naming the field if `value` is outside its declared range."""
    if self.choices and value not in self.choices:
      raise InputError(f"unknown {self.name} {value!r}; expected one of {list(self.choices)}")
    if self.kind in (int, float) and not isinstance(value, bool):
      if not isinstance(value, (int, float)) or value != value:
        raise InputError(f"{self.name}={value!r}: expected a {self.kind.__name__}")
      if self.low is not None and (value < self.low or self.low_open and value == self.low):
        raise InputError(f"{self.name}={value}: expected {'>' if self.low_open else '>='} "
                         f"{self.low}")
      if self.high is not None and (value > self.high or self.high_open and value == self.high):
        raise InputError(f"{self.name}={value}: expected {'<' if self.high_open else '<='} "
                         f"{self.high}")


def _parse_bool(text: str) -> bool:
  words = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}
  if text.lower() not in words:
    raise ValueError(text)
  return words[text.lower()]


def learning_rate(default: float, source: str) -> HParam:
  """The `lr` every model declares (the default optimiser reads it)."""
  return HParam("lr", default, source, low=0.0, low_open=True, help="learning rate")


def weight(name: str, default: float, source: str, help: str = "", *,
           off: float | None = None) -> HParam:
  """A non-negative loss weight or rate; `off=0.0` where 0 removes the model's own
  mechanism (see `HParam.off`)."""
  return HParam(name, default, source, low=0.0, help=help, off=off)


def switch(name: str, help: str) -> HParam:
  """A 0/1 ablation switch, on by default (per run, so ablations share a group); 0 is
  its ablation variant."""
  return HParam(name, 1.0, "the paper's full model (1 = on)", low=0.0, high=1.0, help=help,
                off=0.0)


def modality_option(name: str, default: str, source: str, help: str) -> HParam:
  """A static option that names one of the data's modalities (`ModelSpec.modality`).

  By name, not by position: the order of a data set's modalities depends on how
  they were selected (sorted file names by default), their names do not.
  """
  return HParam(name, default, source, kind=str, per_run=False, names_modality=True, help=help)


def unknown_modality(hparam: HParam, value: str, names: tuple[str, ...],
                     model: str = "") -> str:
  """The one-line error for a modality option that names none of `names`."""
  field = f"{model}.{hparam.name}" if model else hparam.name
  have = ", ".join(names) or "none"
  if value == hparam.default and model:
    return (f"model {model!r} needs a modality named {value!r} ({field}: {hparam.help}); "
            f"the data's modalities are {have}: name the one to use with --set {field}=NAME")
  return f"{field}={value!r}: expected one of the data's modalities ({have})"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """Static description shared by every run of a group (hashable).

  `options` holds the model's static hyper-parameters as (name, value) pairs;
  `modality_names` the data's modality names, in the order of `feature_dims`.
  """
  n_users: int
  n_items: int
  feature_dims: tuple[int, ...]
  embed_dim: int = 64
  options: tuple[tuple[str, Any], ...] = ()
  modality_names: tuple[str, ...] = ()

  @property
  def n_modalities(self) -> int:
    return len(self.feature_dims)

  def option(self, hparam: HParam) -> Any:
    """The group's value of the static hyper-parameter `hparam` (else its default)."""
    return dict(self.options).get(hparam.name, hparam.default)

  def modality(self, hparam: HParam) -> int:
    """The position of the modality that the option `hparam` names (`modality_option`)."""
    name = self.option(hparam)
    if name not in self.modality_names:
      raise InputError(unknown_modality(hparam, name, self.modality_names))
    return self.modality_names.index(name)


@flax.struct.dataclass
class StepContext:
  """What a step knows besides its run's hyper-parameters.

  Attributes:
    key: this call's PRNG key (new every step).
    run_key: a per-run key that stays fixed over training (MILK's `w/o random`).
    epoch: epochs the group has completed (a scalar shared by every run of the
      group, not batched, so a branch on it is a real `lax.cond` under vmap).
    first_stage_epochs: the epochs of the model's first training stage (0: one stage);
      static; evaluation and selection start after it.
    step: the mini-batch's index within the epoch (unbatched like `epoch`, so
      `lax.cond` on it skips work at the other steps); None outside an epoch's
      steps (`pre_epoch`, or a loss evaluated on its own), read as a first step.
  """
  key: jax.Array
  run_key: jax.Array
  epoch: jax.Array
  first_stage_epochs: int = flax.struct.field(pytree_node=False, default=0)
  step: jax.Array | None = None

  @property
  def at_first_step(self) -> jax.Array | bool:
    """Whether this is an epoch's first mini-batch (True where there is no step)."""
    return True if self.step is None else self.step == 0

  @property
  def in_first_stage(self) -> jax.Array:
    return self.epoch < self.first_stage_epochs


@flax.struct.dataclass
class Batch:
  """One mini-batch of BPR triples; `weights` is 0 on padded slots. Shapes (B,)."""
  users: jax.Array
  pos: jax.Array
  neg: jax.Array
  weights: jax.Array


@flax.struct.dataclass
class ModelInputs:
  """Item content as one run sees it.

  Attributes:
    features: per modality (I, d_m) L2-normalised features (shared by runs),
      float32 or bfloat16 (`RunConfig.feature_dtype`).
    available: (I, M) bool observed for this run (natural and simulated).
    fill: per modality (d_m,) vector that replaces a missing row for this run.
    graph: the normalised training user-item graph (shared by runs).
    prepared: what the model's `prepare` built for this run from these inputs.
  """
  features: tuple[jax.Array, ...]
  available: jax.Array
  fill: tuple[jax.Array, ...]
  graph: Any = None
  prepared: Any = None

  def item_features(self, items: jax.Array) -> tuple[jax.Array, ...]:
    """Per modality (N, d_m) float32 rows of `items` with missing rows filled.

    Features stored in bfloat16 are widened here, right after the gather, so
    only their reads are narrow and all arithmetic stays float32.
    """
    out = []
    for m, (feats, fill) in enumerate(zip(self.features, self.fill)):
      observed = self.available[items, m][:, None] > 0
      out.append(jnp.where(observed, feats[items].astype(fill.dtype), fill[None, :]))
    return tuple(out)

  def item_content(self, items: jax.Array) -> jax.Array:
    """(N, Σ d_m) the filled modality rows of `items`, concatenated."""
    return jnp.concatenate(self.item_features(items), axis=-1)

  def warm_items(self, n_items: int) -> jax.Array:
    """(I,) bool: items with a training interaction. Read from the training
    graph, the only split information a model sees; without one, none."""
    if self.graph is None:
      return jnp.zeros((n_items,), bool)
    degree = jax.ops.segment_sum(jnp.ones_like(self.graph.weight), self.graph.src,
                                 num_segments=self.graph.n_nodes)
    return degree[self.graph.n_users:self.graph.n_users + n_items] > 0


def adam_at(learning_rate) -> optax.GradientTransformation:
  """Adam with the (per-run, traced) learning rate held in its state: the one
  optimiser idiom of every model (main, auxiliary and staged optimisers alike).

  `learning_rate` is a rate or an optax schedule (a function of optax's step
  count, evaluated at every update). `inject_hyperparams` keeps the rate as a
  state leaf: the same numbers in a vmapped group as in a run alone (a rate
  closed over from `hp` let XLA fuse the group's update differently, ~1e-6
  apart), and the rate in force is readable from the state.
  """
  return optax.inject_hyperparams(optax.adam)(learning_rate=learning_rate)


def adam(hp, ctx) -> optax.GradientTransformation:
  """The default optimiser: Adam at the run's `lr` (`ctx` unused)."""
  return adam_at(hp["lr"])


# MMRec's default learning-rate schedule (enoche/MMRec @ e775373b,
# src/configs/overall.yaml learning_rate_scheduler [0.96, 50]: a LambdaLR per epoch).
MMREC_LR_DECAY, MMREC_LR_DECAY_EPOCHS = 0.96, 50.0


def mmrec_decayed_adam(hp, ctx) -> optax.GradientTransformation:
  """Adam at lr · 0.96^(epoch / 50), MMRec's schedule (MGCN, LATTICE, MICRO, DGMRec).

  An optax schedule of the epoch (MMRec steps its LambdaLR once per epoch): the
  group's epoch, not optax's step count, which would need the steps per epoch."""
  schedule = optax.exponential_decay(hp["lr"], MMREC_LR_DECAY_EPOCHS, MMREC_LR_DECAY)
  return adam_at(lambda _count: schedule(ctx.epoch))


class State(NamedTuple):
  """A run's trained state: `params` (moved by the optimiser) and `aux`."""
  params: Any
  aux: Any


class Run(NamedTuple):
  """What a step hook knows of its run besides the state (None: `embed`'s ctx)."""
  inputs: ModelInputs
  hp: dict
  ctx: StepContext | None = None


# The defaults of the hooks a model leaves out: they read nothing.
def _no_aux(*_) -> dict:
  return {}


def _nothing_prepared(*_) -> dict:
  return {}


def _aux_unchanged(state: State, *_) -> tuple[Any, dict]:
  return state.aux, {}


def _nothing_for_embed(*_) -> dict:
  return {}


@dataclasses.dataclass(frozen=True)
class Hooks:
  """One group's model functions, built by `Model.make(spec)` (module docstring)."""
  init: Callable[[jax.Array, dict], Any]
  loss: Callable[[State, Batch, Run], tuple[jax.Array, dict]]
  embed: Callable[[State, Run], tuple[jax.Array, jax.Array]]
  init_aux: Callable[[jax.Array, dict, Any], Any] = _no_aux
  prepare: Callable[[ModelInputs, dict], Any] = _nothing_prepared
  pre_epoch: Callable[[State, Run], tuple[Any, dict]] = _aux_unchanged
  aux_step: Callable[[State, Batch, Run], tuple[Any, dict]] = _aux_unchanged
  embed_aux: Callable[[Any], Any] = _nothing_for_embed
  optimizer: Callable[[dict, StepContext], optax.GradientTransformation] = adam
  # The loss returns (scalar, (terms, aux)): the aux its forward pass leaves
  # (batch statistics), kept by the engine as the step's, without a gradient.
  loss_updates_aux: bool = False


@dataclasses.dataclass(frozen=True)
class Model:
  """A model as pure functions (see the module docstring).

  `make(spec)` returns the group's `Hooks`; `hparams` declares every
  hyper-parameter the model reads; `first_stage_epochs`, for a two-stage model,
  is the (static, int) one that sets its first stage's length; `config_defaults`
  changes the default of shared `RunConfig` fields (e.g. the fill);
  `min_modalities` is the fewest modalities the model is defined for;
  `search_space` maps per-run hyper-parameters to the values a tuning sweep
  tries (from the paper or the authors' configs; the source is cited where
  it is defined), so a model's whole search runs in one compiled group. It
  tunes, never ablates: a value a parameter declares as `off` is refused.
  """
  name: str
  hparams: tuple[HParam, ...]
  make: Callable[[ModelSpec], Hooks]
  config_defaults: dict = dataclasses.field(default_factory=dict)
  first_stage_epochs: HParam | None = None
  min_modalities: int = 1
  search_space: dict = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    names = [h.name for h in self.hparams]
    if len(set(names)) != len(names):
      raise ValueError(f"model {self.name!r} declares a hyper-parameter twice: {names}")
    stage = self.first_stage_epochs
    if stage is not None and (stage not in self.hparams or stage.per_run or stage.kind is not int):
      raise ValueError(f"model {self.name!r}: first_stage_epochs {stage.name!r} must be one of "
                       "its declared static int hyper-parameters")
    for name, values in self.search_space.items():
      if name not in self.per_run_hparams:
        raise ValueError(f"model {self.name!r}: search space field {name!r} is not a "
                         "per-run hyper-parameter (a search must run in one group)")
      hparam = self.hparam[name]
      for value in values:
        hparam.check(value)
        if hparam.is_off(value):
          raise ValueError(
              f"model {self.name!r}: search space {name}={value!r} switches the model's "
              f"mechanism off ({hparam.help or name}); that is an ablation variant, not a "
              "tuning point: sweep it with --axis or a grid variant, not in SEARCH_SPACE")

  @property
  def hparam(self) -> dict[str, HParam]:
    return {h.name: h for h in self.hparams}

  @property
  def per_run_hparams(self) -> tuple[str, ...]:
    return tuple(h.name for h in self.hparams if h.per_run)

  def check_modality_options(self, spec: ModelSpec) -> None:
    """Raises a one-line InputError if an option names none of the data's modalities."""
    for h in self.hparams:
      if h.names_modality and spec.option(h) not in spec.modality_names:
        raise InputError(unknown_modality(h, spec.option(h), spec.modality_names, self.name))

  def first_stage_length(self, hp: dict) -> int:
    """Epochs of the first training stage under the run's hyper-parameters `hp` (0: one stage)."""
    return 0 if self.first_stage_epochs is None else int(hp[self.first_stage_epochs.name])

  @property
  def default_hparams(self) -> dict:
    """{name: default} of every declared hyper-parameter."""
    return {h.name: h.default for h in self.hparams}
