"""Named grids, per-model search spaces and variant axes."""
import pytest

from experiments import configs
from jaxrec.analysis import LAYOUTS
from jaxrec.analysis.layouts import MILK_ABLATION
from jaxrec.grid import Grid, apply_overrides
from jaxrec.models import REGISTRY


@pytest.mark.parametrize("name", configs.available())
def test_every_named_grid_expands_and_names_known_layouts(name):
  grid = configs.get_grid(name)
  runs = grid.expand()
  assert runs and len({cfg.run_id for _, cfg in runs}) == len(runs)
  assert all(layout in LAYOUTS for layout in grid.layouts)


@pytest.mark.parametrize("model", sorted(REGISTRY))
def test_each_models_search_space_is_one_compiled_group(model):
  grid = Grid(base=dict(model=model), axes=dict(seed=[0, 1])).tuned()
  runs = grid.expand()
  space = REGISTRY[model].search_space
  n_points = 1
  for values in space.values():
    n_points *= len(values)
  assert len(runs) == 2 * n_points
  assert len({cfg.group_key() for _, cfg in runs}) == 1


def test_tuning_crosses_each_model_with_its_own_space_only():
  grid = apply_overrides(Grid(base={}, axes=dict(model=["milk", "gar"], seed=[0])),
                         tune=True, sets=["milk.alpha=0.1"])
  runs = grid.expand()
  milk = [c for c, cfg in runs if cfg.model == "milk"]
  gar = [c for c, cfg in runs if cfg.model == "gar"]
  assert len(gar) == 3 * 3                                    # lr × α
  # milk.alpha was set, so it is not searched; lr, β and λ_align are.
  assert len(milk) == 3 * 4 * 2 and all("milk.alpha" not in c for c in milk)
  assert all(cfg.hp["alpha"] == 0.1 for _, cfg in runs if cfg.model == "milk")


def test_variant_rows_are_the_bundles_the_report_reads_back():
  runs = configs.get_grid("milk_ablation").expand()
  labels = {label for label, _ in MILK_ABLATION.options}
  assert {c["variant"] for c, _ in runs} == labels
  for coords, cfg in runs:
    record = {"config": cfg.to_dict(), "coords": coords}
    assert MILK_ABLATION.of(record) == coords["variant"]
  # A variant that fixes a field is not searched over it.
  tuned = configs.get_grid("i3mrec_ablation").tuned().expand()
  no_penalty = [cfg for c, cfg in tuned if c["variant"] == "w/o invariance penalty"]
  assert no_penalty and {cfg.hp["penalty_weight"] for cfg in no_penalty} == {0.0}


def test_a_search_space_outside_a_declared_range_is_refused():
  import dataclasses
  with pytest.raises(ValueError, match="lr=-1.0"):
    dataclasses.replace(REGISTRY["mf"], name="bad", search_space={"lr": (-1.0,)})
  with pytest.raises(ValueError, match="not a per-run hyper-parameter"):
    dataclasses.replace(REGISTRY["milk"], name="bad", search_space={"penalty": ("irm",)})


@pytest.mark.parametrize("model", sorted(REGISTRY))
def test_tuning_searches_every_models_learning_rate(model):
  # A model whose rate is not searched loses to one whose is, at an epoch cap, for
  # that reason alone (issue 23: MILK at 1e-3 against MTPR searched up to 0.05).
  runs = apply_overrides(Grid(base=dict(model=model), axes=dict(seed=[0])), tune=True).expand()
  rates = {cfg.hp["lr"] for _, cfg in runs}
  assert len(rates) > 1 and REGISTRY[model].hparam["lr"].default in rates


# Values that switch a model's own mechanism off: ablations (DGMRec's α = 0 and
# λ1 = 0 were in its search space; GAR at α = 1 has no adversary).
MECHANISMS_OFF = [("milk", "penalty_weight", 0.0), ("milk", "align_weight", 0.0),
                  ("milk", "use_envs", 0.0), ("milk", "use_align", 0.0),
                  ("i3mrec", "penalty_weight", 0.0), ("i3mrec", "c_max", 0.0),
                  ("dgmrec", "alpha", 0.0), ("dgmrec", "lambda_1", 0.0), ("gar", "alpha", 1.0),
                  ("heater", "align_weight", 0.0), ("mgcn", "cl_loss", 0.0)]


@pytest.mark.parametrize("model,field,value", MECHANISMS_OFF)
def test_a_search_space_that_switches_a_mechanism_off_is_refused(model, field, value):
  import dataclasses
  base = REGISTRY[model]
  assert base.hparam[field].is_off(value)
  space = {**base.search_space, field: (base.hparam[field].default, value)}
  with pytest.raises(ValueError, match=f"search space {field}={value} switches the model's "
                                       "mechanism off .* an ablation variant, not a tuning"):
    dataclasses.replace(base, name="bad", search_space=space)


def test_an_off_value_is_never_a_default():
  from jaxrec.models.base import HParam
  with pytest.raises(ValueError, match="beta: off=0.0 is its default"):
    HParam("beta", 0.0, "test", low=0.0, off=0.0)
  with pytest.raises(ValueError, match="expected <= 1.0"):
    HParam("share", 0.5, "test", low=0.0, high=1.0, off=2.0)
