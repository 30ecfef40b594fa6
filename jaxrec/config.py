"""One flat, typed configuration per run, and how runs group into compiled groups.

Fields in `PER_RUN_FIELDS` may differ inside a group (they become arrays with a
leading runs axis); every other field changes shapes or control flow and so
splits the grid into separate groups.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

PER_RUN_FIELDS = (
    "seed", "setting", "missing_rate", "fill",
    "lr", "penalty_weight", "align_weight", "alpha", "reg",
    "use_uniform_env", "cyclic", "random_mix", "use_envs", "use_align",
    "c_max", "c_min", "dropout", "temperature", "aux_weight")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """Everything that defines one run.

  Fields left None (the model hyper-parameters and the fill) take the chosen
  model's defaults in `make_config` (MILK's and I3-MRec's reference code), so
  the recorded config is always complete. Fields a model does not use stay None.

  Data: `data` is "synthetic" (sizes below) or a folder in one of the layouts
    of PROTOCOL.md; `modalities` a comma list of feature names ("" = all);
    `min_rating` turns explicit ratings into positives (MovieLens).
  Protocol: "new_item" (seeded split with `split_seed`) or "warm" (the data's
    own split; all items ranked, training items masked).
  Missingness: `setting` ff/fm/mf/mm/mix, `missing_rate` (None = the paper's
    fractions), `fill` "mean" or "zero" (see jaxrec.data.protocol).
  MILK: `penalty` variance/irm/irm_split (per group); weights per run.
  """
  model: str = "milk"
  data: str = "synthetic"
  modalities: str = ""
  min_rating: int = 4
  synthetic_users: int = 1200
  synthetic_items: int = 1000
  synthetic_dims: tuple[int, ...] = (48, 32)
  synthetic_interactions: float = 25.0      # mean interactions per user
  data_seed: int = 0
  protocol: str = "new_item"
  split_seed: int = 0
  new_fraction: float = 0.2
  setting: str = "fm"
  missing_rate: float | None = None
  fill: str | None = None
  embed_dim: int = 64
  batch_size: int = 2048
  penalty: str = "variance"
  max_epochs: int = 1000
  pretrain_epochs: int = 0
  eval_every: int = 10
  patience: int = 3
  eval_chunk: int = 0
  seed: int = 0
  lr: float | None = None
  penalty_weight: float | None = None
  reg: float | None = None
  align_weight: float | None = None
  alpha: float | None = None
  use_uniform_env: float | None = None
  cyclic: float | None = None
  random_mix: float | None = None
  use_envs: float | None = None
  use_align: float | None = None
  c_max: float | None = None
  c_min: float | None = None
  dropout: float | None = None
  temperature: float | None = None   # contrastive temperature (CLCRec, ...)
  aux_weight: float | None = None    # weight of a model's auxiliary term (CLCRec, GAR, ...)
  # How item features are stored on the device: "float32", or "bfloat16" (half
  # the feature bytes; every product still runs and accumulates in float32, on
  # features rounded to bfloat16). An option, never on by default.
  feature_dtype: str = "float32"

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)

  @property
  def run_id(self) -> str:
    """Stable id from the full configuration (used to resume)."""
    fields = {k: v for k, v in self.to_dict().items()
              if not (k in ID_OMITS_DEFAULT and v == ID_OMITS_DEFAULT[k])}
    blob = json.dumps(fields, sort_keys=True, default=list)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]

  def group_key(self) -> tuple:
    """Runs with equal keys share one compiled program."""
    return tuple((k, v) for k, v in sorted(self.to_dict().items())
                 if k not in PER_RUN_FIELDS)


# Fields added after results were first written: left out of `run_id` while at
# these defaults, so existing work directories keep resuming.
ID_OMITS_DEFAULT = {"feature_dtype": "float32"}
FEATURE_DTYPES = ("float32", "bfloat16")

# Defaults of None-valued fields for models that do not set their own.
GENERIC_DEFAULTS = {"fill": "mean"}

FIELD_TYPES = {f.name: f.type for f in dataclasses.fields(RunConfig)}


def parse_value(name: str, text: str) -> Any:
  """Parses a flag string into the type of config field `name`."""
  if name not in FIELD_TYPES:
    raise ValueError(f"unknown config field {name!r}; known: {sorted(FIELD_TYPES)}")
  kind = FIELD_TYPES[name]
  text = text.strip()
  if "None" in kind and text.lower() in ("none", "null", ""):
    return None
  if kind.startswith("tuple"):
    return tuple(int(x) for x in text.replace("x", ",").split(",") if x)
  if kind.startswith("int"):
    return int(text)
  if kind.startswith("float"):
    return float(text)
  return text


def make_config(**overrides) -> RunConfig:
  """A complete `RunConfig`: unset model fields take the model's defaults."""
  from jaxrec.models import get_model   # config is imported by models' users
  unknown = set(overrides) - set(FIELD_TYPES)
  if unknown:
    raise ValueError(f"unknown config fields {sorted(unknown)}; known: {sorted(FIELD_TYPES)}")
  if overrides.get("feature_dtype", "float32") not in FEATURE_DTYPES:
    raise ValueError(f"feature_dtype {overrides['feature_dtype']!r}: expected one of "
                     f"{FEATURE_DTYPES}")
  model = get_model(overrides.get("model", RunConfig.model))
  defaults = {**GENERIC_DEFAULTS, **model.default_hparams, **model.config_defaults}
  values = dict(overrides)
  for name, value in defaults.items():
    if values.get(name) is None:
      values[name] = value
  return RunConfig(**values)
