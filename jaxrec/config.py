"""One typed configuration per run, and how runs group into compiled groups.

A `RunConfig` has the fields every run shares (data, protocol, missingness,
training loop) and the hyper-parameters of its model, exactly those the model
declares (`Model.hparams`, in the model's file). Whether a value may differ
inside one compiled group follows from its declaration: the shared fields in
`PER_RUN_FIELDS` and the model's `per_run` hyper-parameters become arrays with
a leading runs axis; every other field changes shapes or control flow and so
splits the grid into separate groups.

Each shared field states its allowed range where it is declared (the
`dataclasses.field` metadata below), as each model does for its own fields, so
every value is checked once, by name, before anything is built.
"""
import dataclasses
import hashlib
import json
import types
import typing
from typing import Any

# Declared once, where the split reads them (what each choice means is said there).
from jaxrec.data.protocol import CANDIDATES, PROTOCOLS, SETTINGS
from jaxrec.errors import InputError, did_you_mean
from jaxrec.models.base import HParam

PER_RUN_FIELDS = ("seed", "setting", "missing_rate", "fill", "test_missing_rate")
FILLS = ("mean", "zero")
FEATURE_DTYPES = ("float32", "bfloat16")


def _field(default, **limits):
  """A shared field with its allowed range (HParam's low/high/low_open/choices)."""
  return dataclasses.field(default=default, metadata=limits)


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Everything that defines one run.

  Data: `data` is "synthetic" (sizes below) or a folder in one of the layouts
    of PROTOCOL.md; `modalities` a comma list of feature names ("" = all);
    `min_rating` turns explicit ratings into positives (MovieLens).
  Protocol: "new_item" (seeded split with `split_seed`) or "warm" (the data's
    own split; all items ranked, training items masked). `candidates`: the new
    items a new-item evaluation ranks, "all_new" (PROTOCOL.md) or "own_half"
    (validation and test each rank their own half only).
  Missingness: `setting` ff/fm/mf/mm/mix, `missing_rate` (None = the paper's
    fractions), `test_missing_rate` (warm protocol: the share of test items
    missing a modality; None = the authors' 50%), `fill` "mean" or "zero"
    (None = the model's default; see jaxrec.data.protocol).
  Model: `hparams`, the (name, value) pairs of the model's declared
    hyper-parameters, complete; read them with `cfg.hp["lr"]`.
  """
  model: str = "milk"
  data: str = "synthetic"
  modalities: str = ""
  min_rating: int = _field(4, low=0)
  synthetic_users: int = _field(1200, low=2)
  synthetic_items: int = _field(1000, low=2)
  synthetic_dims: tuple[int, ...] = (48, 32)
  synthetic_interactions: float = _field(25.0, low=0.0, low_open=True)
  data_seed: int = 0
  remap_users: bool = False          # renumber sparse user ids (with a warning)
  protocol: str = _field("new_item", choices=PROTOCOLS)
  split_seed: int = 0
  new_fraction: float = _field(0.2, low=0.0, low_open=True, high=1.0, high_open=True)
  candidates: str = _field("all_new", choices=CANDIDATES)
  setting: str = _field("fm", choices=SETTINGS)
  missing_rate: float | None = _field(None, low=0.0, high=1.0)
  test_missing_rate: float | None = _field(None, low=0.0, high=1.0)
  fill: str | None = _field(None, choices=FILLS)
  embed_dim: int = _field(64, low=1)
  batch_size: int = _field(2048, low=1)
  max_epochs: int = _field(1000, low=1)
  eval_every: int = _field(10, low=1)
  patience: int = _field(3, low=1)
  eval_chunk: int = _field(0, low=0)
  seed: int = _field(0, low=0)
  # How item features are stored on the device: "float32", or "bfloat16" (half
  # the feature bytes; every product still runs and accumulates in float32, on
  # features rounded to bfloat16). An option, never on by default.
  feature_dtype: str = _field("float32", choices=FEATURE_DTYPES)
  hparams: tuple[tuple[str, Any], ...] = ()

  @property
  def hp(self) -> dict[str, Any]:
    return dict(self.hparams)

  def to_dict(self) -> dict[str, Any]:
    """Shared fields and the model's hyper-parameters, flat (what a record holds)."""
    out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
           if f.name != "hparams"}
    return {**out, **self.hp}

  def replace(self, **changes) -> "RunConfig":
    """This config with `changes` (shared fields or hyper-parameters), re-checked."""
    return make_config(**{**self.to_dict(), **changes})

  @property
  def run_id(self) -> str:
    """Stable id from the full configuration (used to resume): scheme
    `RUN_ID_SCHEME`, a hash of every field. sweep.json records the scheme, so a
    work directory written under another one is migrated before it resumes
    (`python -m experiments.migrate`)."""
    blob = json.dumps(self.to_dict(), sort_keys=True, default=list)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]

  def group_key(self) -> tuple:
    """Runs with equal keys share one compiled program."""
    from jaxrec.models import get_model
    per_run = set(PER_RUN_FIELDS) | set(get_model(self.model).per_run_hparams)
    return tuple((k, v) for k, v in sorted(self.to_dict().items()) if k not in per_run)


# How `RunConfig.run_id` is derived. 1: the flat configuration of before 2026-12
# (every model's hyper-parameters in one namespace, fields added later left out
# at their defaults); 2: every field of the config. Raise it whenever `run_id`
# changes, with a step in experiments/migrate.py.
RUN_ID_SCHEME = 2

SHARED_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig) if f.name != "hparams"}
FIELD_TYPES = {name: f.type for name, f in SHARED_FIELDS.items()}


def is_optional(name: str) -> bool:
  """Whether shared field `name` may be None (`float | None`)."""
  return type(None) in typing.get_args(FIELD_TYPES[name])


def is_tuple(name: str) -> bool:
  """Whether shared field `name` is a tuple (`synthetic_dims`)."""
  return typing.get_origin(FIELD_TYPES[name]) is tuple


def _kind(name: str) -> type:
  """The type of shared field `name`'s values other than None."""
  field_type = FIELD_TYPES[name]
  if isinstance(field_type, types.UnionType):
    (field_type,) = [t for t in typing.get_args(field_type) if t is not type(None)]
  return field_type
# Defaults of None-valued fields for models that do not set their own.
GENERIC_DEFAULTS = {"fill": "mean"}


def shared_field(name: str) -> HParam:
  """The declaration of shared field `name` as an `HParam` (kind, range, default)."""
  field = SHARED_FIELDS[name]
  kind = _kind(name)
  return HParam(name, field.default, "jaxrec", kind=kind if kind in (int, float, bool) else str,
                per_run=name in PER_RUN_FIELDS, **field.metadata)


def parse_shared(name: str, value: Any) -> Any:
  """`value` (Python value or flag text) of shared field `name`, parsed and checked."""
  if isinstance(value, str):
    text = value.strip()
    if is_optional(name) and text.lower() in ("none", "null", ""):
      return None
    if is_tuple(name):
      try:
        value = tuple(int(x) for x in text.replace("x", ",").split(",") if x)
      except ValueError:
        raise InputError(f"{name}={value!r}: expected integers like 48,32") from None
  if value is None and is_optional(name):
    return None
  if is_tuple(name):
    value = tuple(value)
    if not value or any(int(v) < 1 for v in value):
      raise InputError(f"{name}={value!r}: expected one or more positive integers")
    return value
  return shared_field(name).parse(value)


def split_name(name: str) -> tuple[str | None, str]:
  """'milk.alpha' -> ('milk', 'alpha'); 'alpha' -> (None, 'alpha')."""
  if "." in name:
    model, field = name.split(".", 1)
    return model, field
  return None, name


def parse_value(name: str, text: Any, model: str | None = None) -> Any:
  """Parses and checks the value of field `name` (shared, or a model's).

  An unqualified model field is checked against every model that declares it
  (`model` narrows that to one).
  """
  from jaxrec.models import REGISTRY, get_model
  qualifier, field = split_name(name)
  model = qualifier or model
  if field in SHARED_FIELDS and qualifier is None:
    return parse_shared(field, text)
  if model is not None:
    declared = get_model(model).hparam
    if field in declared:
      return declared[field].parse(text)
    if field in SHARED_FIELDS:
      return parse_shared(field, text)
    raise InputError(f"model {model!r} has no field {field!r}; its fields: "
                     f"{sorted(declared)}")
  readers = [m.hparam[field] for m in REGISTRY.values() if field in m.hparam]
  if not readers:
    known = [*SHARED_FIELDS, *(h for m in REGISTRY.values() for h in m.hparam)]
    raise InputError(f"unknown config field {field!r}{did_you_mean(field, known)}; shared "
                     f"fields: {sorted(SHARED_FIELDS)}; "
                     "model fields: see `python -m experiments.sweep --fields`")
  parsed, errors = [], []
  for h in readers:
    try:
      parsed.append(h.parse(text))
    except ValueError as err:
      errors.append(err)
  if not parsed:
    raise errors[0]
  # Valid for some model: each model of the grid checks it again for itself.
  return parsed[0] if not errors and len({repr(v) for v in parsed}) == 1 else text


def make_config(**overrides) -> RunConfig:
  """A complete, checked `RunConfig`: unset fields take the model's defaults.

  Keys are shared fields, the model's hyper-parameters, or `MODEL.FIELD` for
  this config's model. A field the model does not read is an error.
  """
  from jaxrec.models import get_model
  model_name = overrides.get("model", RunConfig.model)
  model = get_model(model_name)
  shared, hparams = {}, {}
  for name, value in overrides.items():
    qualifier, field = split_name(name)
    if qualifier is not None and qualifier != model_name:
      raise InputError(f"{name}: this config's model is {model_name!r}")
    if field in SHARED_FIELDS:
      shared[field] = value if field == "model" else parse_shared(field, value)
    elif field in model.hparam:
      hparams[field] = model.hparam[field].parse(value)
    else:
      raise InputError(f"model {model_name!r} does not read {field!r}; its fields: "
                       f"{sorted(model.hparam)}; shared fields: {sorted(SHARED_FIELDS)}")
  for name, value in {**GENERIC_DEFAULTS, **model.config_defaults}.items():
    if shared.get(name) is None:
      shared[name] = value
  values = {**model.default_hparams, **hparams}
  cfg = RunConfig(**shared, hparams=tuple((h.name, values[h.name]) for h in model.hparams))
  # A field that only one protocol reads, set away from its default where it is
  # not read, is a mistake worth one line rather than a silently equal run.
  for name, why in ignored_fields(cfg).items():
    value = getattr(cfg, name)
    if name in _PROTOCOL_ONLY_FIELDS and value != SHARED_FIELDS[name].default:
      raise InputError(f"{name}={value!r}: {why}")
  return cfg


_PROTOCOL_ONLY_FIELDS = ("test_missing_rate", "candidates")


def ignored_fields(cfg: RunConfig) -> dict[str, str]:
  """{field: why} for the shared fields that this run's protocol and setting ignore."""
  out = {}
  if cfg.setting in ("ff", "mix"):
    out["missing_rate"] = f"setting {cfg.setting!r} has fixed fractions"
  elif cfg.protocol == "warm" and cfg.setting == "fm":
    out["missing_rate"] = ("under the warm protocol fm hides test items only, at "
                           "test_missing_rate (missing_rate is the training items' share, "
                           "in mf and mm)")
  if not (cfg.protocol == "warm" and cfg.setting in ("fm", "mm")):
    out["test_missing_rate"] = ("it applies to the warm protocol with setting fm or mm "
                                "only (the new-item protocol's test share is missing_rate)")
  if cfg.protocol == "warm":
    out["candidates"] = "the warm protocol ranks every item"
  if cfg.data != "synthetic":
    for name in ("synthetic_users", "synthetic_items", "synthetic_dims",
                 "synthetic_interactions", "data_seed"):
      out[name] = "the data are read from a folder"
  else:
    out["remap_users"] = "synthetic ids are dense"
  return out
