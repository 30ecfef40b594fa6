"""Every registered model passes the same checks (one suite, parameterised over
the registry, as optax's alias_test does for its optimisers):

- it trains two epochs with `fill=zero` and with `fill=mean` on data where some
  items have no modality at all, with finite losses, gradients and parameters,
  jitted and vmapped over a runs axis;
- a vmapped group gives each run what that run gets trained alone (to the
  model's tolerance below);
- it learns the planted signal of the synthetic data: it beats the reference
  scorers (a random ranking, and item popularity on the warm protocol or
  content-predicted popularity on new items).

A model's own equations and mechanisms stay in its own test file. Adding a
model to the registry fails `test_every_registered_model_has_a_case` until it
has a row in `CASES`.
"""
import dataclasses
import functools
import os
import tempfile

import jax
import numpy as np
import pytest

from jaxrec.config import make_config
from jaxrec.data import protocol
from jaxrec.data.synthetic import make_synthetic
from jaxrec.models import REGISTRY
from jaxrec.sweep import train_configs
from tests.helpers import reference_recalls

# --- the data with items that have no modality ------------------------------
N_USERS, N_ITEMS, DIMS = 150, 120, (12, 8)
NAMES = ("image", "text")
NO_MODALITY = np.arange(8)           # items 0-7: every modality missing
ONE_MODALITY = np.arange(8, 20)      # items 8-19: the text missing


@functools.lru_cache(maxsize=None)
def all_missing_data() -> str:
  """A pair-TSV folder of tiny synthetic data in which items 0-7 have no
  modality (their `*_mask.npy` rows are False) and items 8-19 no text; written
  once per process. Under the new-item protocol some of those items are warm
  and some new (checked in `test_the_data_has_warm_and_new_items_without_content`)."""
  folder = tempfile.mkdtemp(prefix="jaxrec-all-missing-")
  dataset = make_synthetic(n_users=N_USERS, n_items=N_ITEMS, feature_dims=DIMS, seed=3)
  for name, (split, pairs) in zip(("train", "val", "test"), protocol.random_pair_split(
      dataset, seed=0).items()):
    assert name == split
    np.savetxt(os.path.join(folder, f"{split}.tsv"), pairs, fmt="%d", delimiter="\t",
               header="userID\titemID", comments="")
  available = np.ones((N_ITEMS, len(NAMES)), bool)
  available[NO_MODALITY] = False
  available[ONE_MODALITY, 1] = False
  for m, name in enumerate(NAMES):
    np.save(os.path.join(folder, f"{name}_feat.npy"), dataset.features[m])
    np.save(os.path.join(folder, f"{name}_mask.npy"), available[:, m])
  return folder


# --- one row per model ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Case:
  """How the suite runs one model.

  Attributes:
    protocol: the protocol the model is built for ("warm" or "new_item").
    tiny: fields of every tiny run (static options the model needs on 120 items).
    varied: per-run hyper-parameters the group's second run changes besides
      the seed, setting, fill and lr (the model's own terms, so a wrongly
      batched one shows).
    group_data: fields replacing the group test's data and settings, where
      the all-missing data cannot give a group exactly each run alone (see why).
    metric_tol: |group - alone| allowed on each test metric.
    param_tol: (rtol, atol) on the selected parameters.
    learn: fields of the learning run on `LEARN_DATA[protocol]`.
    over_reference: Recall@20 factors over (random, popularity) on the warm
      protocol, over (random, content popularity) on new items.
  """
  protocol: str
  tiny: dict = dataclasses.field(default_factory=dict)
  varied: dict = dataclasses.field(default_factory=dict)
  group_data: dict = dataclasses.field(default_factory=dict)
  metric_tol: float = 1e-5
  param_tol: tuple = (1e-4, 1e-5)
  learn: dict = dataclasses.field(default_factory=dict)
  over_reference: tuple = (2.0, 1.2)


# The first stage of the pretrained baselines is MF-BPR: one epoch of it, then
# two of the model's own stage (where the content is read).
PRETRAINED_TINY = dict(pretrain_epochs=1, max_epochs=3)
PRETRAINED_LEARN = dict(pretrain_epochs=20, max_epochs=30, eval_every=5, patience=3)
# GAR is validated every epoch with patience 10, as the authors' main.py (its
# new-item ranking peaks soon after the players start, then falls).
GAR_LEARN = dict(pretrain_epochs=20, max_epochs=40, eval_every=1, patience=10)
NEW = (2.0, 1.3)
# LATTICE and MICRO rebuild a kNN graph from their fine-tuned features: items
# that share a fill (here the items without any modality, and under mm every
# masked one) differ only by their small learned offsets, so their cosines are
# near-ties that a group's reassociated sums flip (measured on the all-missing
# data: parameters 0.01-0.035 apart after two epochs, Recall/HR up to 0.02). A
# group is checked on data whose items have distinct content; their fills are
# checked on the all-missing data like every model's.
DISTINCT_CONTENT = dict(data="synthetic", synthetic_users=N_USERS, synthetic_items=N_ITEMS,
                        synthetic_dims=DIMS, setting="ff", fill="mean")

CASES = {
    # Warm protocol. Epochs to reach the margin with the model's default
    # (paper) hyper-parameters unless an lr is given; MF-BPR's lr 1e-3 Adam on
    # ~24 batches per epoch is the slowest to converge.
    "mf": Case("warm", learn=dict(max_epochs=60)),
    "vbpr": Case("warm", learn=dict(max_epochs=20)),
    "lightgcn": Case("warm", learn=dict(max_epochs=25)),
    # Without negatives BM3 moves slowly at its lr 1e-3 on this small data
    # (Recall@20 0.068 after 10 epochs, below popularity); 1e-2 is in the usual grids.
    "bm3": Case("warm", varied=dict(dropout=0.3, reg_weight=0.01),
                learn=dict(max_epochs=10, lr=1e-2)),
    "freedom": Case("warm", varied=dict(dropout=0.9), learn=dict(max_epochs=10)),
    "lattice": Case("warm", varied=dict(lambda_coeff=0.5), group_data=DISTINCT_CONTENT,
                    learn=dict(max_epochs=10)),
    "lgmrec": Case("warm", varied=dict(alpha=0.6, keep_rate=0.8), learn=dict(max_epochs=10)),
    "mgcn": Case("warm", varied=dict(cl_loss=0.1), learn=dict(max_epochs=10)),
    # At lr 1e-3 ten epochs reach popularity only (0.098 vs 0.098); 5e-3 is in
    # MMRec's grid.
    "mmgcn": Case("warm", varied=dict(reg_weight=1e-3), learn=dict(max_epochs=10, lr=5e-3)),
    "dgmrec": Case("warm", varied=dict(alpha=0.8, lambda_1=0.0),
                   learn=dict(max_epochs=10, setting="mm", missing_rate=0.3)),
    "i3mrec": Case("warm", varied=dict(c_max=1e-2), learn=dict(max_epochs=30),
                   over_reference=(2.0, 1.3)),
    # New-item protocol. DUIF (lr 1e-3, content only) needs 30 epochs for a safe
    # margin; MTPR and CLCRec are well past it after 20.
    "duif": Case("new_item", learn=dict(max_epochs=30, eval_every=10), over_reference=NEW),
    "mtpr": Case("new_item", learn=dict(max_epochs=20, eval_every=10), over_reference=NEW),
    "clcrec": Case("new_item", learn=dict(max_epochs=20, eval_every=10), over_reference=NEW),
    # lr 1e-3: at the Amazon code's 1e-4 it is still at random level here after 20 epochs.
    "ccfcrec": Case("new_item", learn=dict(max_epochs=20, eval_every=10), over_reference=NEW),
    # lr 1e-2: at the default 5e-4 (and 1e-3) MICRO is still below 2x random
    # here after 20 epochs (0.38 against random 0.21).
    "micro": Case("new_item", varied=dict(lambda_coeff=0.5), group_data=DISTINCT_CONTENT,
                  learn=dict(max_epochs=20, eval_every=10, lr=1e-2), over_reference=NEW),
    "milk": Case("new_item", varied=dict(alpha=1.0, penalty_weight=5.0, random_mix=0.0,
                                         cyclic=0.0),
                 learn=dict(max_epochs=40, eval_every=5), over_reference=NEW),
    "dropoutnet": Case("new_item", tiny=PRETRAINED_TINY, learn=PRETRAINED_LEARN,
                       over_reference=NEW),
    "heater": Case("new_item", tiny=PRETRAINED_TINY, learn=PRETRAINED_LEARN,
                   over_reference=NEW),
    "gar": Case("new_item", tiny=PRETRAINED_TINY, learn=GAR_LEARN, over_reference=NEW),
    "gar_scaled": Case("new_item", tiny=PRETRAINED_TINY, learn=GAR_LEARN,
                       over_reference=NEW),
    # 20 clusters: the default (the authors' 2000) would put each of 120 items alone.
    "gorec": Case("new_item", tiny=dict(PRETRAINED_TINY, n_clusters=20),
                  learn=dict(PRETRAINED_LEARN, max_epochs=40), over_reference=NEW),
}
# Static options that change a model's program: each is a group of its own.
VARIANTS = [("i3mrec", dict(penalty="irm_split")), ("lattice", dict(train_features=False)),
            ("milk", dict(penalty="irm")), ("milk", dict(penalty="irm_split"))]
GROUP_CASES = [(name, {}) for name in CASES] + VARIANTS

TINY = dict(embed_dim=8, batch_size=128, max_epochs=2, eval_every=1, patience=5)
LEARN_DATA = dict(synthetic_users=600, synthetic_items=500, synthetic_dims=(24, 16),
                  embed_dim=32, batch_size=512, eval_every=5, setting="ff", seed=0)


def _variant_id(case):
  name, static = case
  return name + "".join(f"-{k}={v}" for k, v in static.items())


def test_every_registered_model_has_a_case():
  assert set(CASES) == set(REGISTRY)


def test_the_data_has_warm_and_new_items_without_content():
  from jaxrec.engine.inputs import dataset_for, split_for
  cfg = make_config(data=all_missing_data(), model="mf", protocol="new_item")
  dataset, split = dataset_for(cfg), split_for(cfg)
  assert not dataset.available[NO_MODALITY].any()
  assert split.train_items[NO_MODALITY].any() and split.eval_items[NO_MODALITY].any()


def _group_configs(name: str, fields: dict):
  """Two runs of one group on the all-missing data (unless `fields` says
  otherwise): seed 0, mm, fill=zero at the defaults; seed 1, ff, fill=mean at
  another lr and the model's varied terms."""
  case = CASES[name]
  common = dict(TINY, **case.tiny, data=all_missing_data(), model=name,
                protocol=case.protocol)
  runs = [dict(seed=0, setting="mm", fill="zero"),
          dict(seed=1, setting="ff", fill="mean", lr=3e-3, **case.varied)]
  return [make_config(**{**common, **run, **fields}) for run in runs]


@functools.lru_cache(maxsize=None)
def _trained_group(name: str, field_items: tuple = ()):
  """(configs, outcome, per-epoch terms) of the two-run group (cached: the
  group-equals-alone test reuses the fill test's group)."""
  configs = _group_configs(name, dict(field_items))
  curves = []
  outcome = train_configs(configs, on_epoch=lambda epoch, terms: curves.append(terms))
  return configs, outcome, curves


@pytest.mark.parametrize("name", sorted(CASES))
def test_trains_with_items_that_have_no_modality_under_both_fills(name):
  _, outcome, curves = _trained_group(name, ())
  # Run 0 has fill=zero, run 1 fill=mean; neither diverged (the engine freezes
  # a run whose loss or parameters go non-finite and records the epoch).
  assert outcome.diverged_epoch.tolist() == [0, 0]
  assert len(curves) == outcome.epochs_trained.max() >= 2
  for terms in curves:
    for term, values in terms.items():
      assert np.isfinite(np.asarray(values)).all(), (term, values)
  for leaf in jax.tree.leaves(outcome.best_params):
    assert np.isfinite(np.asarray(leaf)).all()


@pytest.mark.parametrize("case", GROUP_CASES, ids=[_variant_id(c) for c in GROUP_CASES])
def test_a_group_equals_each_run_alone(case):
  name, static = case
  tol = CASES[name]
  # A variant (a static option) runs on the all-missing data.
  fields = static or tol.group_data
  configs, group, _ = _trained_group(name, tuple(sorted(fields.items())))
  params = [np.asarray(leaf) for leaf in jax.tree.leaves(group.best_params)]
  # The two runs differ by far more than the tolerance, so the check can fail.
  assert max(np.abs(p[0] - p[1]).max() for p in params) > 100 * tol.param_tol[1]
  for r, cfg in enumerate(configs):
    alone = train_configs([cfg])
    for got, want in zip(params, jax.tree.leaves(alone.best_params)):
      np.testing.assert_allclose(got[r], np.asarray(want)[0], rtol=tol.param_tol[0],
                                 atol=tol.param_tol[1])
    for metric in group.test:
      assert group.test[metric][r] == pytest.approx(alone.test[metric][0],
                                                    abs=tol.metric_tol), metric
    assert group.selected_epoch[r] == alone.selected_epoch[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_learns_the_planted_signal(name):
  case = CASES[name]
  cfg = make_config(**{**LEARN_DATA, **case.learn}, model=name, protocol=case.protocol)
  outcome = train_configs([cfg])
  refs = reference_recalls(cfg)
  got = float(outcome.test["recall@20"][0])
  popularity = "popularity" if case.protocol == "warm" else "content_popularity"
  print(f"recall@20 {name} {got:.3f} random {refs['random']:.3f} "
        f"{popularity} {refs[popularity]:.3f}")
  assert outcome.diverged_epoch[0] == 0
  # A two-stage model is selected in its own stage, not at its pretrained MF.
  assert outcome.selected_epoch[0] > case.learn.get("pretrain_epochs", 0)
  assert got > case.over_reference[0] * refs["random"]
  assert got > case.over_reference[1] * refs[popularity]
