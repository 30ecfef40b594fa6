"""The model interface: one shape for every model, declared hyper-parameters, an
engine without special cases, and results kept through the redesign."""
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxrec import losses
from jaxrec.config import make_config
from jaxrec.engine.inputs import build_group
from jaxrec.grid import Grid, apply_overrides
from jaxrec.models import REGISTRY, register_model
from jaxrec.models.base import HParam, Hooks, Model, ModelSpec, Run, State
from jaxrec.sweep import run_sweep, train_configs
from tests.helpers import SHARED, prepared_runs

TINY = dict(synthetic_users=200, synthetic_items=160, synthetic_dims=(12, 8), embed_dim=8,
            batch_size=128, max_epochs=4, eval_every=2, patience=5)
PIN = os.path.join(os.path.dirname(__file__), "fixtures", "redesign_pin.json")
TIKTOK = os.path.join(SHARED, "data", "tiktok-diffmm")


# --- a model defined entirely here -------------------------------------------
K_NEIGHBOURS = 4


def _knn(inputs, n_items):
  """Per run: each item's K nearest items by its *masked, filled* content."""
  content = inputs.item_content(jnp.arange(n_items))
  sim = content @ content.T - 1e9 * jnp.eye(n_items)
  return {"neighbours": jax.lax.top_k(sim, K_NEIGHBOURS)[1]}


def _make(spec):
  def init(key, hp):
    k_u, k_w = jax.random.split(key)
    return {"users": 0.1 * jax.random.normal(k_u, (spec.n_users, spec.embed_dim)),
            "w": 0.1 * jax.random.normal(k_w, (sum(spec.feature_dims), spec.embed_dim))}

  def items(params, inputs):
    """Items: their content map, smoothed over the run's content kNN graph."""
    own = inputs.item_content(jnp.arange(spec.n_items)) @ params["w"]
    return 0.5 * own + 0.5 * own[inputs.prepared["neighbours"]].mean(1)

  def loss(state, batch, run):
    params = state.params
    v, u = items(params, run.inputs), params["users"][batch.users]
    bpr = losses.bpr_risk(score_diff=jnp.sum(u * (v[batch.pos] - v[batch.neg]), -1),
                          weights=batch.weights)
    return bpr + run.hp["smooth_reg"] * jnp.sum(params["w"] ** 2), {"bpr": bpr}

  def embed(state, run):
    return state.params["users"], items(state.params, run.inputs)
  return Hooks(init=init, loss=loss, embed=embed,
               prepare=lambda inputs, hp: _knn(inputs, spec.n_items),
               optimizer=lambda hp, ctx: optax.sgd(hp["lr"], momentum=0.9))


TOY = Model(
    name="toy_knn", make=_make,
    hparams=(HParam("lr", 0.5, "this test", low=0.0, low_open=True),
             HParam("smooth_reg", 1e-4, "this test", low=0.0)))


@pytest.fixture
def toy_model():
  register_model(TOY)
  yield TOY
  REGISTRY.pop(TOY.name)


def test_a_model_defined_in_a_test_trains_through_the_sweep(toy_model, tmp_path):
  base = dict(TINY, model="toy_knn", max_epochs=6, synthetic_users=300, synthetic_items=600)
  grid = apply_overrides(Grid(base=base, axes={}),
                         seeds=2, sets=["toy_knn.smooth_reg=0.001"],
                         axes=["lr=0.2,0.5", "setting=ff,fm"])
  records = run_sweep(grid, str(tmp_path), progress=False)
  assert len(records) == 8
  for rec in records:
    # The record holds the fields its model reads, nothing of other models.
    assert rec["config"]["smooth_reg"] == 0.001 and "penalty_weight" not in rec["config"]
    assert rec["diverged_epoch"] == 0
  # Every run of the grid shares one compiled group: lr and the setting are per run.
  assert len({rec["group"] for rec in records}) == 1
  # It learns: beats a random ranking of the 120 new items (recall@20 ~ 20/120).
  recall = np.mean([rec["test"]["recall@20"] for rec in records])
  assert recall > 1.5 * 20 / 120, recall


def test_prepare_runs_once_per_run_on_its_own_masked_features(toy_model):
  # Warm protocol: fm hides a modality of half the test items in evaluation only.
  configs = [make_config(**TINY, model="toy_knn", protocol="warm", setting="ff", seed=0),
             make_config(**TINY, model="toy_knn", protocol="warm", setting="fm", seed=0)]
  group = build_group(configs)
  runs = prepared_runs(configs)
  train_nb = np.asarray(runs.prepared["train"]["neighbours"])
  eval_nb = np.asarray(runs.prepared["eval"]["neighbours"])
  np.testing.assert_array_equal(train_nb[0], eval_nb[0])      # ff: one graph
  np.testing.assert_array_equal(train_nb[0], train_nb[1])     # same training masks
  assert (eval_nb[1] != train_nb[1]).any()                    # its masked test items
  # Each run's graph is exactly the one built from its own inputs alone.
  from tests.helpers import one_run
  run = one_run(configs[1])
  own_eval = run.inputs.replace(available=jnp.asarray(group.runs.eval_available[1]))
  np.testing.assert_array_equal(eval_nb[1], run.hooks.prepare(own_eval, run.hp)["neighbours"])


def test_every_hook_has_a_default_and_the_engine_asks_nothing():
  spec = ModelSpec(n_users=3, n_items=4, feature_dims=(2,), embed_dim=2)
  full = _make(spec)
  bare = Hooks(init=full.init, loss=full.loss, embed=full.embed)
  state = State(params={}, aux={"a": 1})
  assert bare.init_aux(None, {}, {}) == {}
  assert bare.prepare(None, {}) == {}
  assert bare.pre_epoch(state, Run(None, {})) == ({"a": 1}, {})
  assert bare.aux_step(state, None, Run(None, {})) == ({"a": 1}, {})
  assert bare.embed_aux({"a": 1}) == {}
  assert isinstance(bare.optimizer({"lr": 0.1}, None), optax.GradientTransformation)
  with pytest.raises(ValueError, match="twice"):
    Model(name="dup", make=_make, hparams=(HParam("lr", 0.1, "a"), HParam("lr", 0.2, "b")))


def _measuring_make(spec):
  """TOY's hooks with an aux that counts steps and reports what it saw."""
  def aux_step(state, batch, run):
    aux = {"steps": state.aux["steps"] + 1.0}
    return aux, {"batch_weight": jnp.sum(batch.weights), "steps_seen": aux["steps"]}

  def pre_epoch(state, run):
    return {"steps": jnp.float32(0.0)}, {"epoch_seen": run.ctx.epoch.astype(jnp.float32)}
  return dataclasses.replace(_make(spec), init_aux=lambda key, hp, params: {"steps": 0.0},
                             aux_step=aux_step, pre_epoch=pre_epoch)


def _three_epochs_of(name, make):
  """(each epoch's terms, the outcome, training pairs, steps per epoch) of TOY with `make`."""
  model = dataclasses.replace(TOY, name=name, make=make)
  register_model(model)
  try:
    cfg = make_config(**dict(TINY, max_epochs=3), model=name)
    curves = []
    outcome = train_configs([cfg], on_epoch=lambda epoch, terms: curves.append(terms))
    n_train = int(build_group([cfg]).data.train_pairs.shape[0])
  finally:
    REGISTRY.pop(model.name)
  return curves, outcome, n_train, -(-n_train // 128)


def test_aux_measurements_reach_the_curves_like_loss_terms():
  curves, outcome, n_train, steps = _three_epochs_of("toy_measuring", _measuring_make)
  assert len(curves) == outcome.epochs_trained[0] == 3
  for epoch, terms in enumerate(curves):
    assert {"loss", "bpr", "grad_norm", "aux_norm"} <= set(terms)
    # A pre_epoch measurement is the epoch's own; an aux_step's, the mean over its steps.
    assert float(terms["epoch_seen"][0]) == epoch
    assert float(terms["batch_weight"][0]) == pytest.approx(n_train / steps, rel=1e-6)
    assert float(terms["steps_seen"][0]) == pytest.approx((steps + 1) / 2, rel=1e-6)


def _loss_counting_make(spec):
  """TOY's hooks whose loss hands back an aux that counts the steps (loss_updates_aux)."""
  toy = _make(spec)

  def loss(state, batch, run):
    value, terms = toy.loss(state, batch, run)
    after = {"steps": state.aux["steps"] + 1.0}
    return value, ({**terms, "steps_seen": after["steps"]}, after)
  return dataclasses.replace(toy, init_aux=lambda key, hp, params: {"steps": 0.0}, loss=loss,
                             loss_updates_aux=True)


def test_the_aux_a_loss_hands_back_is_the_next_steps():
  curves, _, _, steps = _three_epochs_of("toy_loss_aux", _loss_counting_make)
  # Step s of epoch e sees e·steps + s + 1: the count carries over steps and epochs.
  for epoch, terms in enumerate(curves):
    assert float(terms["steps_seen"][0]) == pytest.approx(epoch * steps + (steps + 1) / 2,
                                                          rel=1e-6)


def test_a_two_stage_model_declares_its_first_stage():
  from jaxrec.engine.inputs import group_settings
  first = HParam("warmup", 2, "test", kind=int, per_run=False)
  with pytest.raises(ValueError, match="first_stage_epochs"):
    Model(name="staged", make=_make, hparams=(HParam("lr", 0.1, "a"),), first_stage_epochs=first)
  assert REGISTRY["gar"].first_stage_epochs.name == "pretrain_epochs"
  _, settings = group_settings(make_config(**TINY, model="gar", pretrain_epochs=3))
  assert settings.first_stage_epochs == 3
  _, settings = group_settings(make_config(**TINY, model="milk"))
  assert settings.first_stage_epochs == 0


def test_no_model_discards_hook_arguments_or_imports_the_engine():
  models = os.path.join(os.path.dirname(os.path.dirname(__file__)), "jaxrec", "models")
  for name in sorted(os.listdir(models)):
    if name.endswith(".py"):
      text = open(os.path.join(models, name)).read()
      assert "\n  del " not in text and "\n    del " not in text, name
      assert "jaxrec.engine" not in text, name


# --- hyper-parameters declared by each model ---------------------------------
def test_per_run_or_per_group_follows_the_declaration():
  a = make_config(**TINY, model="milk", lr=1e-3, penalty_weight=1.0)
  b = make_config(**TINY, model="milk", lr=3e-3, penalty_weight=9.0)
  assert a.group_key() == b.group_key()                       # per run: one group
  c = make_config(**TINY, model="milk", penalty="irm")
  assert c.group_key() != a.group_key()                       # static: its own group
  d = make_config(**TINY, model="dropoutnet", pretrain_epochs=2)
  e = make_config(**TINY, model="dropoutnet", pretrain_epochs=3)
  assert d.group_key() != e.group_key()


def test_names_are_qualified_by_model_and_checked():
  assert make_config(model="gar", **{"gar.alpha": 0.2}).hp["alpha"] == 0.2
  with pytest.raises(ValueError, match="does not read 'penalty_weight'"):
    make_config(model="gar", penalty_weight=1.0)
  with pytest.raises(ValueError, match="this config's model is 'gar'"):
    make_config(model="gar", **{"milk.alpha": 0.2})
  with pytest.raises(ValueError, match="lr=-0.1: expected > 0"):
    make_config(model="milk", lr=-0.1)
  with pytest.raises(ValueError, match="lr='abc': expected float"):
    make_config(model="milk", lr="abc")
  with pytest.raises(ValueError, match="unknown penalty 'l1'; expected one of"):
    make_config(model="milk", penalty="l1")
  # A record holds the fields its model reads.
  assert "alpha" in make_config(model="gar").to_dict()
  assert "penalty_weight" not in make_config(model="gar").to_dict()


def test_per_model_axes_cross_only_their_model():
  grid = Grid(base=dict(TINY), axes={"model": ["milk", "gar"], "seed": [0, 1],
                                     "milk.penalty_weight": [1.0, 10.0, 50.0],
                                     "gar.alpha": [0.05, 0.5]})
  runs = grid.expand()
  by_model = {}
  for coords, cfg in runs:
    by_model.setdefault(cfg.model, []).append(coords)
  assert len(by_model["milk"]) == 2 * 3 and len(by_model["gar"]) == 2 * 2
  assert all("gar.alpha" not in c for c in by_model["milk"])
  assert {c["gar.alpha"] for c in by_model["gar"]} == {0.05, 0.5}
  with pytest.raises(ValueError, match="no model of this grid reads it"):
    Grid(base=dict(temperature=1.0), axes={"model": ["milk", "gar"]}).expand()
  with pytest.raises(ValueError, match="'heater' is not a model of this grid"):
    Grid(base={}, axes={"model": ["milk"], "heater.dropout": [0.1]}).expand()


# --- frozen means frozen ------------------------------------------------------
@pytest.mark.parametrize("name", ["dropoutnet", "heater", "gar", "gorec"])
def test_pretrained_tables_are_bit_identical_after_the_second_stage(name):
  base = dict(TINY, model=name, pretrain_epochs=3, eval_every=1, patience=10, setting="ff")
  first = train_configs([make_config(**{**base, "max_epochs": 3})])
  both = train_configs([make_config(**{**base, "max_epochs": 7})])
  assert both.selected_epoch[0] > 3           # the selected state is a second-stage one
  for table in ("users", "items"):
    np.testing.assert_array_equal(both.best_params["mf"][table],
                                  first.best_params["mf"][table])


# --- measurements --------------------------------------------------------------
def test_curves_carry_gradient_and_parameter_norms():
  seen = []
  train_configs([make_config(**TINY, seed=0), make_config(**TINY, seed=1, lr=0.01)],
                on_epoch=lambda e, terms: seen.append(terms))
  for terms in seen:
    assert terms["grad_norm"].shape == (2,) and np.all(terms["grad_norm"] > 0)
    assert np.all(terms["param_norm"] > 0)
  # The run with the larger rate moves further from its start.
  assert seen[-1]["param_norm"][1] != seen[-1]["param_norm"][0]


# --- results kept through the redesign -----------------------------------------
def _pinned(section):
  with open(PIN) as f:
    return json.load(f)[section]


def test_default_sweep_gives_the_metrics_of_before_the_redesign(tmp_path):
  # The `missing_rates` grid, shortened; metrics recorded at commit 5b3cfff.
  grid = Grid(base=dict(model="milk", max_epochs=10, eval_every=5, patience=3),
              axes=dict(missing_rate=[0.0, 0.5], setting=["fm", "mm"], seed=[0, 1]))
  want = _pinned("default_sweep")
  records = run_sweep(grid, str(tmp_path), progress=False)
  assert len(records) == len(want)
  for rec in records:
    old = want[json.dumps(rec["coords"], sort_keys=True)]
    assert rec["selected_epoch"] == old["selected_epoch"]
    for split in ("val", "test"):
      for metric, value in old[split].items():
        assert rec[split][metric] == pytest.approx(value, abs=1e-5), (rec["coords"], metric)


@pytest.mark.skipif(not os.path.isdir(TIKTOK), reason="TikTok data not in ../shared/data")
def test_milk_group_on_tiktok_gives_the_metrics_of_before_the_redesign():
  configs = [make_config(model="milk", data=TIKTOK, max_epochs=4, eval_every=2, patience=3,
                         seed=s, setting=st, penalty_weight=50.0, align_weight=0.5)
             for s, st in ((0, "fm"), (1, "mm"))]
  out = train_configs(configs)
  want = _pinned("milk_tiktok")
  assert out.selected_epoch.tolist() == want["selected_epoch"]
  for split, got in (("val", out.val), ("test", out.test)):
    for metric, values in want[split].items():
      np.testing.assert_allclose(got[metric], values, atol=1e-5, err_msg=metric)


def test_a_declared_range_is_written_in_interval_notation():
  assert HParam("lr", 0.1, "t", low=0.0, low_open=True).interval() == "(0, ∞)"
  assert HParam("p", 0.1, "t", low=0.0, high=1.0, high_open=True).interval() == "[0, 1)"
  assert HParam("k", 3, "t", kind=int, high=5).interval() == "(−∞, 5]"
  assert HParam("w", 0.5, "t").interval() == ""
