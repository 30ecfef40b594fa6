"""Grids of runs: a base configuration, axes to cross, per-model values and axes.

An axis or value named `FIELD` applies to every run whose model reads FIELD
(shared fields apply to all runs); `MODEL.FIELD` applies to that model's runs
only. So one grid can tune each model over its own search space and compare
them: each model's runs are crossed only with the axes that apply to it.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Iterable, Sequence

from jaxrec.config import (SHARED_FIELDS, RunConfig, ignored_fields, make_config,
                           is_tuple, parse_value, split_name)
from jaxrec.errors import InputError, did_you_mean
from jaxrec.models import get_model


def applies(name: str, model: str) -> bool:
  """Whether grid field `name` (FIELD or MODEL.FIELD) applies to runs of `model`."""
  qualifier, field = split_name(name)
  if qualifier is not None:
    return qualifier == model
  return field in SHARED_FIELDS or field in get_model(model).hparam


@dataclasses.dataclass(frozen=True)
class Grid:
  """A base configuration and the axes to cross (field -> list of values).

  `per_model` holds fields that apply only to runs of one model (model name ->
  {field: value}), e.g. MILK's TikTok hyper-parameters in a grid that compares it
  with baselines that keep their own defaults. Precedence: base < per_model <
  axes. An axis `MODEL.FIELD` is that model's search space.

  `variants` are axes whose values are named bundles of fields (name ->
  ((label, {field: value}), ...)), e.g. ablation rows; a model's runs are
  crossed with a variant axis if the model reads every field of it.
  `layouts` names the report layouts (jaxrec.analysis.LAYOUTS) the grid is
  made for; they do not change any run.
  """
  base: dict
  axes: dict
  per_model: dict = dataclasses.field(default_factory=dict)
  variants: dict = dataclasses.field(default_factory=dict)
  layouts: tuple[str, ...] = ()

  @property
  def models(self) -> list[str]:
    return list(self.axes.get("model", [self.base.get("model", RunConfig.model)]))

  def check(self) -> None:
    """Raises InputError for a field that no run of the grid would read."""
    models = self.models
    for model in models:
      get_model(model)
    for name in [*self.base, *self.axes]:
      qualifier, field = split_name(name)
      if qualifier is not None and qualifier not in models:
        raise InputError(f"{name}: {qualifier!r} is not a model of this grid ({models})")
      if not any(applies(name, m) for m in models):
        known = [*SHARED_FIELDS, *(h for m in models for h in get_model(m).hparam)]
        raise InputError(f"{name}: no model of this grid reads it{did_you_mean(field, known)} "
                         f"(models: {models})")
    for model, fields in self.per_model.items():
      for name in fields:
        if not applies(name, model):
          raise InputError(f"{model}.{name}: model {model!r} does not read {name!r}; its "
                           f"fields: {sorted(get_model(model).hparam)}")
    for name, values in {**self.axes, **self.variants}.items():
      if not list(values):
        raise InputError(f"axis {name} has no values")
    for name, options in self.variants.items():
      fields = {f for _, bundle in options for f in bundle}
      if not any(all(applies(f, m) for f in fields) for m in models):
        raise InputError(f"variant axis {name}: no model of this grid reads all of "
                         f"{sorted(fields)}")

  def expand(self) -> list[tuple[dict, RunConfig]]:
    """All (coordinates, config) pairs, in a stable order (model by model)."""
    self.check()
    out = []
    for model in self.models:
      names = [n for n in self.axes if n != "model" and applies(n, model)]
      variants = {n: options for n, options in self.variants.items()
                  if all(applies(f, model) for _, bundle in options for f in bundle)}
      base = {split_name(k)[1]: v for k, v in self.base.items() if applies(k, model)}
      for chosen in itertools.product(*variants.values()):
        bundles = {split_name(f)[1]: v for _, bundle in chosen for f, v in bundle.items()}
        labels = {n: label for n, (label, _) in zip(variants, chosen)}
        # A field a variant fixes is not searched in that variant's runs.
        free = [n for n in names if split_name(n)[1] not in bundles]
        for values in itertools.product(*(self.axes[n] for n in free)):
          coords = dict(zip(free, values))
          coords = {**({"model": model} if "model" in self.axes else {}), **labels, **coords}
          fields = {**base, **self.per_model.get(model, {}), **bundles,
                    **{split_name(k)[1]: v for k, v in coords.items() if k not in labels},
                    "model": model}
          out.append((coords, make_config(**fields)))
    _refuse_runs_that_differ_only_in_ignored_fields(out)
    return out

  def to_json(self) -> dict:
    out = {"base": {k: self.base[k] for k in sorted(self.base)},
           "axes": {k: list(self.axes[k]) for k in sorted(self.axes)}}
    if self.per_model:       # absent when empty, so older sweep.json files still match
      out["per_model"] = {m: {k: v[k] for k in sorted(v)}
                          for m, v in sorted(self.per_model.items())}
    if self.variants:
      out["variants"] = {n: [[label, dict(sorted(bundle.items()))] for label, bundle in options]
                         for n, options in sorted(self.variants.items())}
    return out

  @classmethod
  def from_json(cls, saved: dict) -> "Grid":
    """The grid of a sweep.json (`to_json`'s output; other keys are ignored)."""
    return cls(base=saved["base"], axes=saved["axes"], per_model=saved.get("per_model", {}),
               variants={n: tuple((label, bundle) for label, bundle in options)
                         for n, options in saved.get("variants", {}).items()})

  def tuned(self) -> "Grid":
    """This grid with every model's declared search space as its per-model axes
    (an axis the grid already has for that model or field is kept)."""
    axes = dict(self.axes)
    for model in self.models:
      for field, values in get_model(model).search_space.items():
        if f"{model}.{field}" not in axes and field not in axes:
          axes[f"{model}.{field}"] = list(values)
    return dataclasses.replace(self, axes=axes)


def _refuse_runs_that_differ_only_in_ignored_fields(runs) -> None:
  """An axis whose values some runs ignore would train the same run twice."""
  seen = {}
  for coords, cfg in runs:
    ignored = ignored_fields(cfg)
    key = tuple(sorted((k, repr(v)) for k, v in cfg.to_dict().items() if k not in ignored))
    if key in seen:
      other = seen[key]
      names = sorted(k for k in coords if coords[k] != other.get(k))
      why = "; ".join(f"{n}: {ignored[split_name(n)[1]]}" for n in names
                      if split_name(n)[1] in ignored)
      raise InputError(f"runs {other} and {coords} would be the same run: their only "
                       f"difference is ignored ({why or names})")
    seen[key] = coords


def split_assignment(assignment: str) -> tuple[str, str]:
  """'FIELD=VALUE' -> ('FIELD', 'VALUE')."""
  if "=" not in assignment:
    raise InputError(f"expected FIELD=VALUE, got {assignment!r}")
  name, value = assignment.split("=", 1)
  return name.strip(), value


def apply_overrides(grid: Grid, *, models: Sequence[str] = (), seeds: int | None = None,
                    epochs: int | None = None, data: str | None = None,
                    sets: Iterable[str] = (), axes: Iterable[str] = (),
                    tune: bool = False) -> Grid:
  """`grid` with the command line's overrides, in the order the flags apply.

  `sets` are FIELD=VALUE (every run that reads FIELD; replaces the grid's axis
  and per-model values of FIELD) or MODEL.FIELD=VALUE (that model's runs);
  `axes` FIELD=V1,V2 or MODEL.FIELD=V1,V2 (replace the grid's axis); `tune`
  adds each model's search space (`Grid.tuned`) for the fields not set.
  """
  base, grid_axes = dict(grid.base), dict(grid.axes)
  per_model = {m: dict(v) for m, v in grid.per_model.items()}

  def set_field(name, value):
    base[name] = value
    grid_axes.pop(name, None)
    for fields in per_model.values():
      fields.pop(name, None)

  if epochs is not None:
    set_field("max_epochs", parse_value("max_epochs", str(epochs)))
  if data is not None:
    set_field("data", data)
  if seeds is not None:
    if seeds < 1:
      raise InputError(f"--seeds {seeds}: expected at least 1")
    grid_axes["seed"] = list(range(seeds))
  models = [m.strip() for m in models if m.strip()]
  for model in models:
    get_model(model)
  if len(models) == 1:
    set_field("model", models[0])
  elif models:
    grid_axes["model"] = models
  for assignment in sets:
    name, value = split_assignment(assignment)
    qualifier, field = split_name(name)
    if qualifier is not None:
      get_model(qualifier)                  # an unknown model name is a usage error
      per_model.setdefault(qualifier, {})[field] = parse_value(name, value)
      grid_axes.pop(name, None)
    else:
      set_field(name, parse_value(name, value))
  for assignment in axes:
    name, values = split_assignment(assignment)
    qualifier, field = split_name(name)
    if qualifier is not None:
      get_model(qualifier)
    if field in SHARED_FIELDS and is_tuple(field):
      raise InputError(f"--axis {name}: tuple fields cannot be swept")
    parsed = [parse_value(name, v) for v in values.split(",")]
    if len(set(map(repr, parsed))) != len(parsed):
      raise InputError(f"--axis {name}: repeated values {values!r}")
    grid_axes[name] = parsed
    base.pop(name, None)
    if qualifier is None:
      for fields in per_model.values():
        fields.pop(field, None)
    else:
      per_model.get(qualifier, {}).pop(field, None)
  out = dataclasses.replace(grid, base=base, axes=grid_axes, per_model=per_model)
  if not tune:
    return out
  fixed = set(base) | {f"{m}.{f}" for m, fields in per_model.items() for f in fields}
  tuned = out.tuned()
  return dataclasses.replace(tuned, axes={
      k: v for k, v in tuned.axes.items()
      if k in out.axes or (k not in fixed and split_name(k)[1] not in fixed)})
