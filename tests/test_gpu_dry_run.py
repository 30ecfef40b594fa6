"""The GPU check's dry run: every part runs at tiny sizes on CPU and writes the real run's files."""
import json
import os
import subprocess
import sys
import tarfile

from tests.helpers import REPO

PARTS = ("env", "setup", "tests", "bench_milk_baby_float32", "bench_milk_tiktok_float32",
         "sweep", "eval_floor", "bench_i3mrec_float32", "bench_milk_bfloat16",
         "bench_i3mrec_bfloat16")
TABLES = ("summary.md", "summary.json", "tests.xml", "eval_floor.json", "sweep/results.jsonl",
          *(f"{p}.json" for p in PARTS if p.startswith("bench_")))


def test_dry_run_runs_every_part_and_writes_every_file(tmp_path):
  out = tmp_path / "out"
  env = {k: v for k, v in os.environ.items() if k != "OUT"}
  env["PYTHON"] = sys.executable                              # the interpreter under test
  proc = subprocess.run(["bash", os.path.join(REPO, "scripts", "gpu_check.sh"), "--dry-run",
                         "--out", str(out)], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=400)
  assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
  work = tmp_path / "out.d"
  with open(work / "summary.json") as f:
    summary = json.load(f)
  status = {p["name"]: p["status"] for p in summary["parts"]}
  assert status == {p: "ok" for p in PARTS}, status
  for name in TABLES + tuple(f"logs/{p}.log" for p in PARTS):
    assert (work / name).is_file(), name
  assert summary["tests"]["tests"] >= 1 and summary["tests"]["failures"] == 0
  assert summary["sweep"]["results"] == 4                    # 2 seeds x fm/mm
  assert {(r["model"], r["feature_dtype"]) for r in summary["bench"]} == {
      ("milk", "float32"), ("milk", "bfloat16"), ("i3mrec", "float32"), ("i3mrec", "bfloat16")}
  assert {r["protocol"] for r in summary["eval_floor"]} == {"new_item", "warm"}
  # What the device tool brings back: the two summaries and one archive of the rest.
  assert (out / "summary.md").is_file() and (out / "summary.json").is_file()
  with tarfile.open(out / "gpu_check.tar.gz") as tar:
    packed = {os.path.relpath(n, "out.d") for n in tar.getnames()}
  assert set(TABLES) <= packed
