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


# ------------------------------------- the README's commands, as printed ---

# Commands a test cannot run: the suite itself, and the data a fresh clone lacks.
NOT_HERE = (("scripts/test.sh", "the test suite itself"),
            ("--data", "data a fresh clone does not have"))
# Grids too long for a test even at one epoch (a compilation per model, 11 models).
LONG_GRIDS = ("newitem_compare",)
FAILURE_SIGNS = ("Traceback", "error:", "crash (", "holds a different sweep", "refused")


def readme_commands(readme: str) -> list[str]:
  """Every shell command of the README's ```bash blocks, in order, with its line
  continuations joined and its comment dropped."""
  blocks = re.findall(r"^[ \t]*```bash\n(.*?)^[ \t]*```", readme, re.S | re.M)
  commands = []
  for block in blocks:
    for line in block.replace("\\\n", " ").splitlines():
      line = line.split(" #")[0].strip()
      if line and not line.startswith("#"):
        commands.append(" ".join(line.split()))
  return commands


def _skip_reason(command: str) -> str | None:
  for fragment, why in NOT_HERE:
    if fragment in command.split():
      return why
  if any(f"--grid {g}" in command for g in LONG_GRIDS):
    return "a long grid"
  return None


def _one_epoch(command: str) -> list[str]:
  """The command's words, its sweep cut to one epoch (`--epochs`, the same flag
  on every command, so that a repeated grid still resumes)."""
  import shlex
  words = shlex.split(command)
  sweeps = "experiments.sweep" in words or "scripts/sweep.sh" in words
  if sweeps and not {"--fields", "--helpfull", "--help"} & set(words):
    words.append("--epochs=1")
  return words


def _scratch_clone(root) -> str:
  """The checkout's files (tracked and new, not ignored) in `root`, with a `.venv`
  whose python is this one, recorded as installed so setup.sh installs nothing."""
  import hashlib
  import shutil
  import subprocess
  import sys
  files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.split("\0")
  for name in filter(None, files):
    if os.path.isfile(os.path.join(REPO, name)):
      os.makedirs(os.path.dirname(os.path.join(root, name)), exist_ok=True)
      shutil.copy2(os.path.join(REPO, name), os.path.join(root, name))
  os.makedirs(os.path.join(root, ".venv", "bin"))
  python = os.path.join(root, ".venv", "bin", "python")
  with open(python, "w") as f:
    f.write(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
  os.chmod(python, 0o755)
  pyproject = hashlib.sha256(open(os.path.join(root, "pyproject.toml"), "rb").read())
  with open(os.path.join(root, ".venv", "jaxrec-installed"), "w") as f:
    f.write(f"{pyproject.hexdigest()} {os.path.realpath(root)}\n")
  return str(root)


def test_the_readme_commands_run_in_order_from_a_fresh_clone(tmp_path):
  import subprocess
  readme = open(os.path.join(REPO, "README.md")).read()
  root = _scratch_clone(tmp_path / "clone")
  # A user saves the add-a-model example as its file before tuning it.
  section = readme[readme.index("## Adding a model"):]
  with open(os.path.join(root, "jaxrec", "models", "knn_content.py"), "w") as f:
    f.write(re.search(r"```python\n(.*?)```", section, re.S).group(1))
  # Its own data cache; the suite's compilation cache (tests/conftest.py), which changes
  # no result, only how often a program is compiled.
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "HOME": str(tmp_path)}
  ran, skipped, outputs = [], [], {}
  for command in readme_commands(readme):
    why = _skip_reason(command)
    if why:
      skipped.append(command)
      continue
    words = _one_epoch(command)
    assignments = [w for w in words if re.match(r"^[A-Z_]+=", w)]
    words = words[len(assignments):] if words[:len(assignments)] == assignments else words
    done = subprocess.run(words, cwd=root, capture_output=True, text=True, timeout=600,
                          env={**env, **dict(a.split("=", 1) for a in assignments)})
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{command}\n{output[-3000:]}"
    signs = [s for s in FAILURE_SIGNS if s in output]
    assert not signs, f"{command}: {signs}\n{output[-3000:]}"
    ran.append(command)
    outputs[command] = output
  assert any("scripts/sweep.sh" in c for c in ran) and any("knn_content" in c for c in ran)
  assert any("smoke_8_devices" in c for c in ran), ran
  assert len(ran) >= 7, (ran, skipped)
  # Installed already, with pyproject.toml unchanged: setup.sh installs and prints nothing.
  setup = outputs["bash scripts/sweep.sh"]
  assert "pip" not in setup and "editable" not in setup and setup.startswith("sweep:"), setup


def test_help_exits_0():
  import subprocess
  import sys
  for flag in ("--help", "-h"):
    done = subprocess.run([sys.executable, "-m", "experiments.sweep", flag], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "--grid" in done.stdout, (flag, done.stderr)
