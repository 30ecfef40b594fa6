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
  assert len(gar) == len(REGISTRY["gar"].search_space["alpha"])
  # milk.alpha was set, so it is not searched; β and λ_align are.
  assert len(milk) == 4 * 2 and all("milk.alpha" not in c for c in milk)
  assert all(cfg.alpha == 0.1 for _, cfg in runs if cfg.model == "milk")


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
  assert no_penalty and {cfg.penalty_weight for cfg in no_penalty} == {0.0}


def test_a_search_space_outside_a_declared_range_is_refused():
  import dataclasses
  with pytest.raises(ValueError, match="lr=-1.0"):
    dataclasses.replace(REGISTRY["mf"], name="bad", search_space={"lr": (-1.0,)})
  with pytest.raises(ValueError, match="not a per-run hyper-parameter"):
    dataclasses.replace(REGISTRY["milk"], name="bad", search_space={"penalty": ("irm",)})
