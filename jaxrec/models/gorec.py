"""GoRec: a Generative Cold-start Recommendation framework (Bai et al., ACM MM
2023), on a pretrained MF-BPR model.

Read from the authors' code, github.com/HaoyueBai98/GoRec at commit
20836eebc2ca6b6e580998b31523948d5734ce5f (model/gorec_model.py: Encoder,
Decoder, GoRec.forward; session/gorec_session.py: train_epoch, evaluate_model;
criterion.py: uniformity; loader/ae_loader.py: the cluster means;
main/gorec.py: the defaults), with ColdRec's port as a second reading
(github.com/YuanchenBei/ColdRec at 18efd24ec79b0ac2b5b7b10ebc8703274fc117d1,
model/GoRec.py, config/model_param.py).

Stage 1 (the first `pretrain_epochs` epochs) is MF-BPR on `params["mf"]`
(jaxrec/models/pretrained.py); in stage 2 those tables are frozen bit for bit
(`pretrained.two_stage_adam`) and a conditional VAE learns to reproduce a warm
item's pretrained embedding e_i from itself and its content c_i (the L2-
normalised concatenated features):
  encoder  h = tanh(BN(W_e [c, e_i])),  μ = L_μ h,  log σ² = L_σ h;
  prior    μ_p = P_μ c,  log σ_p² = P_σ c  (conditioned on content only);
  z = μ + σ ε,  z_p = μ_p + σ_p ε',  decoder ê = L_2 L_1 tanh(BN(W_d [drop(c), z]));
  loss = MSE(ê, e_i) + kl_coeff · KL(z, z_p) + uni_coeff · log E_{i<j} e^{-2 |μ̂_i − μ̂_j|²},
where KL(z, z_p) is what the code computes, `torch.nn.KLDivLoss()(z, z_p)` on
the two samples: mean over elements of z_p (log z_p − z) where z_p > 0, else
0 (PyTorch ≤ 1.7's kl_div, pytorch/pytorch#43348; later versions return NaN
for negative targets), and μ̂ is μ L2-normalised (criterion.uniformity).
A new item is generated at test from the mean pretrained embedding of the
warm items in its content cluster: ê = decoder(μ(encoder(mean, c)), c)
(evaluate_model: z = μ, no sampling, batch norm on running averages).

Batch norm as torch's BatchNorm1d (momentum 0.1, eps 1e-5): training uses the
batch's statistics; the running averages live in the auxiliary state and are
updated by the training pass the loss differentiates, which hands them back
(`Hooks.loss_updates_aux`), so the statistics follow exactly the parameters
and samples of each step, as torch's forward, and the pass runs once. Its
noise is drawn from the key `aux_step` stores in the auxiliary state.

Deviations ([D]):
  [D] The pretrained warm model is MF-BPR trained in-sweep (the code loads
      embeddings of its own pretrained models, vsgcl by default).
  [D] Training items are the distinct positive items of the engine's batch
      (the code: batches of 256 warm item ids, each once per epoch).
  [D] Clusters: k-means (`N_CLUSTERS`, `KMEANS_STEPS` Lloyd steps, seeded
      with a fixed draw of items) on the run's filled, normalised content, in
      `prepare`; the code reads a precomputed cluster_label.npy (its source
      is not in the repository; ColdRec clusters the CF embeddings). The
      number of clusters follows the catalogue at the authors' Baby ratio
      (2000 labels over 7050 items, data/baby/cluster_label.npy): 1,904 on
      TikTok, 477 on MovieLens-100K (a fixed 2000, capped at the item count,
      made every MovieLens item its own cluster, so no new item had a warm
      member to be conditioned on). The cluster mean is the code's
      mean over all the cluster's items with the new items' rows as zeros: the
      authors' pretrained table (data/baby/vsgcl_iemb_baby.pt) has all-zero
      rows for its 1410 cold items, ours has untrained ones, which are left out.
  [D] Running variances are flax's biased batch variance (torch keeps the
      unbiased one); warm items keep their pretrained row at test (the code
      generates every item, but ranks new items only, as here).
  [D] Stage 1's Adam rate `lr` is DropoutNet's (as the other pretrained
      baselines); the CVAE's rate `gen_lr` is the code's.
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxrec.models import mf, pretrained
from jaxrec.models.base import (Batch, HParam, Hooks, Model, ModelInputs, ModelSpec, Run, State,
                                StepContext,
                                learning_rate, weight)
from jaxrec.models.layers import dense, dropout, first_occurrence, l2_normalise_rows

SOURCE = "authors' code, main/gorec.py (README: Baby)"
N_CLUSTERS = HParam(
    "n_clusters", 0, "authors' data/baby/cluster_label.npy (2000 clusters of 7050 items; "
    "sports 2000, clothing 1024; ColdRec's pre_cluster_num is 50)", kind=int, per_run=False,
    low=0, help="content clusters whose mean pretrained row conditions a new item "
    "(0: one per ITEMS_PER_CLUSTER items, the authors' Baby ratio)")
HPARAMS = (
    learning_rate(5e-3, "DropoutNet's MF stage [D]"),
    HParam("reg", 1e-4, "MF-BPR's (first stage)", low=0.0, help="L2 of the MF stage"),
    HParam("gen_lr", 1e-3, "authors' code, main/gorec.py", low=0.0, low_open=True,
           help="Adam rate of the CVAE (stage 2)"),
    weight("uni_coeff", 5.0, SOURCE, "weight of the uniformity of μ", off=0.0),
    weight("kl_coeff", 10.0, SOURCE, "weight of the KL term between z and the prior's z_p",
           off=0.0),
    HParam("dropout", 0.3, "authors' code, main/gorec.py", low=0.0, high=0.99,
           help="dropout of the decoder's content input"),
    N_CLUSTERS, pretrained.PRETRAIN_EPOCHS)
KMEANS_STEPS = 20
ITEMS_PER_CLUSTER = 7050 / 2000   # the authors' Baby file: 2000 clusters of 7050 items
DECODER_LAYERS = 2      # the code's decoder_layer default
BN_MOMENTUM = 0.9       # torch BatchNorm1d's momentum 0.1, in flax's convention
BN_EPSILON = 1e-5


class GoRecNet(nn.Module):
  """The CVAE; latent, z and output widths are all `dim` (the code's 64)."""
  dim: int
  content_dim: int

  def setup(self):
    d, c = self.dim, self.content_dim
    bn = lambda: nn.BatchNorm(momentum=BN_MOMENTUM, epsilon=BN_EPSILON)
    self.enc_fc, self.enc_bn = dense(d, d + c, bias=False), bn()
    self.mu, self.logvar = dense(d, d), dense(d, d)
    self.prior_mu, self.prior_logvar = dense(d, c), dense(d, c)
    self.dec_fc, self.dec_bn = dense(d, d + c, bias=False), bn()
    self.dec_out = [dense(d, d) for _ in range(DECODER_LAYERS)]

  def encode(self, warm, content, train: bool, mask=None):
    """(μ, log σ²) of q(z | e, c)."""
    h = self.enc_fc(jnp.concatenate([content, warm], -1))
    h = jnp.tanh(self.enc_bn(h, use_running_average=not train, mask=mask))
    return self.mu(h), self.logvar(h)

  def decode(self, z, content, train: bool, mask=None):
    h = self.dec_fc(jnp.concatenate([content, z], -1))
    h = jnp.tanh(self.dec_bn(h, use_running_average=not train, mask=mask))
    for layer in self.dec_out:
      h = layer(h)
    return h

  def __call__(self, warm, content, mask, keys, rate):
    """Training pass: (ê, μ, z, z_p); `keys` draw ε, ε' and the dropout."""
    mu, logvar = self.encode(warm, content, True, mask)
    prior_mu, prior_logvar = self.prior_mu(content), self.prior_logvar(content)
    z = mu + jax.random.normal(keys[0], mu.shape) * jnp.exp(0.5 * logvar)
    z_prior = prior_mu + jax.random.normal(keys[1], mu.shape) * jnp.exp(0.5 * prior_logvar)
    rec = self.decode(z, dropout(content, rate, keys[2]), True, mask)
    return rec, mu, z, z_prior

  def generate(self, warm, content):
    """Inference: ê = decoder(μ(encoder(warm, c)), c) on running averages."""
    return self.decode(self.encode(warm, content, False)[0], content, False)


def _net(spec: ModelSpec) -> GoRecNet:
  return GoRecNet(spec.embed_dim, pretrained.content_dim(spec))


def _content(inputs: ModelInputs, items) -> jax.Array:
  """(N, Σ d_m) the code's side information: filled features, concatenated, L2-normalised."""
  return l2_normalise_rows(inputs.item_content(items))


def _init_variables(key, spec: ModelSpec) -> dict:
  d, k_init, k_noise = spec.embed_dim, *jax.random.split(key)
  one = jnp.zeros((2, d)), jnp.zeros((2, pretrained.content_dim(spec)))
  return _net(spec).init(k_init, *one, jnp.ones((2, 1), bool), jax.random.split(k_noise, 3),
                         0.0)


def uniformity(x: jax.Array, weights: jax.Array) -> jax.Array:
  """log of the mean over valid pairs i < j of exp(-2 |x̂_i − x̂_j|²) (criterion.uniformity)."""
  unit = l2_normalise_rows(x)
  sq = jnp.sum(unit ** 2, -1)
  dist = jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * unit @ unit.T, 0.0)
  pair = jnp.triu(weights[:, None] * weights[None, :], k=1)
  return jnp.log(jnp.sum(pair * jnp.exp(-2.0 * dist)) / jnp.maximum(jnp.sum(pair), 1.0))


def torch_kl_div(log_input: jax.Array, target: jax.Array) -> jax.Array:
  """Elementwise torch (≤ 1.7) kl_div: target (log target − input) where target > 0, else 0."""
  positive = target > 0
  safe = jnp.where(positive, target, 1.0)
  return jnp.where(positive, safe * (jnp.log(safe) - log_input), 0.0)


def cvae_pass(params, stats, batch: Batch, inputs: ModelInputs, hp, key, spec: ModelSpec):
  """(terms `rec`, `kl`, `uni`, running averages after the pass) of one
  training pass over the batch's distinct positive items (the frozen e_i)."""
  items = batch.pos
  w = first_occurrence(items, batch.weights)
  warm = pretrained.frozen_mf(params)["items"][items]
  (rec, mu, z, z_prior), updated = _net(spec).apply(
      {"params": params["gorec"], "batch_stats": stats}, warm, _content(inputs, items),
      w[:, None] > 0, jax.random.split(key, 3), hp["dropout"], mutable=["batch_stats"])
  row_mean = lambda x: jnp.sum(w * jnp.mean(x, -1)) / jnp.maximum(jnp.sum(w), 1.0)
  terms = {"rec": row_mean(jnp.square(rec - warm)), "kl": row_mean(torch_kl_div(z, z_prior)),
           "uni": uniformity(mu, w)}
  return terms, updated["batch_stats"]


def _assign(x: jax.Array, centres: jax.Array) -> jax.Array:
  return jnp.argmax(2.0 * x @ centres.T - jnp.sum(centres ** 2, -1)[None, :], axis=-1)


def cluster_count(spec: ModelSpec) -> int:
  """`n_clusters`, or one cluster per ITEMS_PER_CLUSTER items where it is 0; at most I."""
  k = spec.option(N_CLUSTERS) or max(1, round(spec.n_items / ITEMS_PER_CLUSTER))
  return min(k, spec.n_items)


def content_clusters(inputs: ModelInputs, spec: ModelSpec) -> dict:
  """{"cluster": (I,) each item's content cluster}: k-means on the run's content."""
  x = _content(inputs, jnp.arange(spec.n_items))
  k = cluster_count(spec)
  seeds = jax.random.permutation(jax.random.PRNGKey(0), spec.n_items)[:k]

  def lloyd(_, centres):
    labels = _assign(x, centres)
    sums = jax.ops.segment_sum(x, labels, num_segments=k)
    counts = jax.ops.segment_sum(jnp.ones(spec.n_items), labels, num_segments=k)
    return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centres)
  return {"cluster": _assign(x, jax.lax.fori_loop(0, KMEANS_STEPS, lloyd, x[seeds]))}


def cluster_means(item_table: jax.Array, labels: jax.Array, warm: jax.Array,
                  n_clusters: int) -> jax.Array:
  """(I, D) per item the mean pretrained row of its cluster, new items' rows
  counted as zeros (the loader's `item_emb[cluster == i].mean(0)` over the
  authors' pretrained table, whose cold rows are all zero), so a cluster with
  no warm item gives the zero vector."""
  w = warm.astype(jnp.float32)
  sums = jax.ops.segment_sum(item_table * w[:, None], labels, num_segments=n_clusters)
  sizes = jax.ops.segment_sum(jnp.ones_like(w), labels, num_segments=n_clusters)
  return (sums / jnp.maximum(sizes, 1.0)[:, None])[labels]


def generated_items(params, stats, inputs: ModelInputs, spec: ModelSpec) -> jax.Array:
  """(I, D) every item's generated embedding (inference mode)."""
  all_items = jnp.arange(spec.n_items)
  condition = cluster_means(params["mf"]["items"], inputs.prepared["cluster"],
                            inputs.warm_items(spec.n_items), cluster_count(spec))
  return _net(spec).apply({"params": params["gorec"], "batch_stats": stats}, condition,
                          _content(inputs, all_items), method=GoRecNet.generate)


def embed_aux(aux):
  return aux["stats"]


def optimizer(hp, ctx: StepContext):
  return pretrained.two_stage_adam(ctx, hp["lr"], hp["gen_lr"])


def make(spec: ModelSpec) -> Hooks:
  def init(key, hp):
    k_mf, k_net = jax.random.split(key)
    return {"mf": mf.mf_params(k_mf, spec.n_users, spec.n_items, spec.embed_dim),
            "gorec": _init_variables(k_net, spec)["params"]}

  def init_aux(key, hp, params):
    """{"stats": the batch norms' running averages, "noise": the step's key}."""
    return {"stats": _init_variables(key, spec)["batch_stats"], "noise": key}

  def prepare(inputs: ModelInputs, hp):
    return content_clusters(inputs, spec)

  def aux_step(state: State, batch: Batch, run: Run):
    """Stage 2: the step's key, from which the loss's pass draws its noise."""
    def step(aux):
      return {"stats": aux["stats"], "noise": run.ctx.key}
    return jax.lax.cond(run.ctx.in_first_stage, lambda aux: aux, step, state.aux), {}

  def own_loss(state: State, batch: Batch, run: Run):
    """(loss, (terms, aux after the pass: its batch norms' running averages))."""
    params, aux = state
    hp = run.hp
    t, stats = cvae_pass(params, aux["stats"], batch, run.inputs, hp, aux["noise"], spec)
    loss = t["rec"] + hp["kl_coeff"] * t["kl"] + hp["uni_coeff"] * t["uni"]
    return loss, (t, {"stats": stats, "noise": aux["noise"]})

  def embed(state: State, run: Run):
    """Users: the pretrained rows; warm items theirs, new items generated."""
    params, inputs = state.params, run.inputs
    items = jnp.where(inputs.warm_items(spec.n_items)[:, None], params["mf"]["items"],
                      generated_items(params, state.aux, inputs, spec))
    return params["mf"]["users"], items
  return Hooks(init=init, loss=pretrained.staged_loss(own_loss, updates_aux=True),
               embed=embed, init_aux=init_aux, prepare=prepare, aux_step=aux_step,
               embed_aux=embed_aux, optimizer=optimizer, loss_updates_aux=True)


# The authors' README values per data set (Baby 5 / 10, Clothing 1 / 5000,
# Sports 15 / 5000 for uni_coeff / kl_coeff). lr is the MF stage's (gen_lr stays the
# code's), the default 5e-3 and its neighbours in MMRec's learning_rate grid
# (enoche/MMRec @ e775373b, src/configs/model/MMGCN.yaml [1e-4, 5e-4, 1e-3, 5e-3, 1e-2]) [D].
SEARCH_SPACE = {"lr": (1e-3, 5e-3, 1e-2), "uni_coeff": (1.0, 5.0, 15.0),
                "kl_coeff": (10.0, 5000.0)}
GOREC = Model(name="gorec", hparams=HPARAMS, make=make,
              first_stage_epochs=pretrained.PRETRAIN_EPOCHS, config_defaults={"fill": "mean"},
              search_space=SEARCH_SPACE)
