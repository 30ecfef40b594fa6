"""The README's custom-loss example runs as written and trains through the engine."""
import os
import re

import numpy as np

from tests.helpers import REPO


def test_custom_loss_example_runs(tmp_path, monkeypatch):
  readme = open(os.path.join(REPO, "README.md")).read()
  section = readme[readme.index("## Custom losses"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  monkeypatch.chdir(tmp_path)
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)
  records = namespace["records"]
  assert len(records) == 4
  assert {r["config"]["model"] for r in records} == {"milk_modality_envs"}
  # It learned: a random ranking of the 100 new items gets Recall@20 of about 0.2.
  assert np.mean([r["test"]["recall@20"] for r in records]) > 0.3
  curves = os.listdir(tmp_path / "runs" / "custom_loss" / "curves")
  line = open(tmp_path / "runs" / "custom_loss" / "curves" / curves[0]).readline()
  assert '"penalty"' in line and '"risk"' in line


def test_adding_a_model_example_defines_a_model_that_trains(tmp_path, monkeypatch):
  import jaxrec
  from jaxrec.models import REGISTRY
  readme = open(os.path.join(REPO, "README.md")).read()
  section = readme[readme.index("## Adding a model"):]
  code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
  namespace = {}
  exec(compile(code, "README.md", "exec"), namespace)
  model = namespace["KNN_CONTENT"]
  jaxrec.register_model(model)
  monkeypatch.chdir(tmp_path)
  try:
    grid = jaxrec.Grid(base=dict(model="knn_content", synthetic_users=300, synthetic_items=600,
                                 embed_dim=16, batch_size=256, max_epochs=6, eval_every=2),
                       axes={"seed": [0, 1], "knn_content.reg": [0.0, 1e-3]})
    records = jaxrec.run_sweep(grid, "runs/knn", progress=False)
  finally:
    REGISTRY.pop("knn_content")
  assert len(records) == 4
  # It learned: a random ranking of the 120 new items gets Recall@20 of about 0.17.
  assert np.mean([r["test"]["recall@20"] for r in records]) > 0.25
