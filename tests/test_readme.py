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
