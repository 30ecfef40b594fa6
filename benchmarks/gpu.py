"""Everything a short GPU lease should tell us, in one call that writes it all to files.

  python -m benchmarks.gpu --out /tmp/gpu            # a GPU: about 8 minutes (--budget_s)
  python -m benchmarks.gpu --dry-run --out /tmp/dry  # CPU, tiny sizes, under 3 minutes
  bash scripts/gpu_check.sh [--dry-run]              # the same, packed for the device tool

Parts, in order, each a subprocess with its own time limit (and never more than
what is left of --budget_s), so a slow part is cut and recorded as such while
the rest still run:
  env        Python, package versions, devices and their memory limit
  setup      installs what the interpreter lacks, offline: wheels carried in .whl/,
             then `pip install --no-deps -e .` (the GPU image has the other deps)
  tests      the tests of device-specific paths: evaluation, sharding, memory
             planning, checkpoint/resume, compaction, bf16 features
  bench_*    `python -m benchmarks.run` for MILK and I3-MRec on the Baby and
             TikTok shapes, R up to 1024 as memory allows, float32 and bfloat16
  sweep      one MILK grid of 64 runs (milk_paper, 32 seeds x fm/mm) end to end
             through `python -m experiments.sweep` on TikTok-shaped synthetic data
  eval_floor `python -m benchmarks.eval_floor`: evaluation against its matmul floor
The dry run runs the same parts with tiny sizes (the `tiny` benchmark shape at
R = 1, a 4-run grid, one test; setup only says what it would install) on CPU
and writes the same files: OUT/logs/<part>.log,
OUT/<part>.json for benchmarks, OUT/tests.xml, OUT/sweep/, OUT/summary.json and
OUT/summary.md (every part's status and seconds, and the tables).

Other modules are called only through their command lines: the engine's Python
API is being redesigned, `benchmarks.run` and `experiments.sweep` keep their flags.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Tests that touch what differs on a device: evaluation's kernels, sharding,
# planning against the device's limit, checkpoints, compaction, bf16, donation.
# Most device-specific first: a cut keeps them (the sharding test fakes 8 CPU devices).
TEST_FILES = ("tests/test_eval.py", "tests/test_benchmarks.py", "tests/test_engine.py",
              "tests/test_memory.py", "tests/test_resume.py", "tests/test_sharding.py")
TEST_SELECT = "not test_engine.py or compact or bfloat16 or donat"

# TikTok's sizes for the sweep's synthetic data (benchmarks/measure.py SHAPES).
DRY_LIMIT_S = 90.0
DRY_XLA_FLAGS = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")

TIKTOK_DATA = ("synthetic_users=9308", "synthetic_items=6710", "synthetic_dims=128,128",
               "synthetic_interactions=7.4")
TINY_DATA = ("synthetic_users=300", "synthetic_items=200", "synthetic_dims=16,8",
             "synthetic_interactions=6", "embed_dim=16", "batch_size=256")

ENV_SCRIPT = r"""
import importlib.metadata as md, json, platform, shutil, subprocess, sys
import jax
info = {"python": sys.version.split()[0], "executable": sys.executable,
        "platform": platform.platform(), "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "device_kind": jax.devices()[0].device_kind,
        "memory_stats": jax.devices()[0].memory_stats(), "packages": {}}
for name in ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "chex", "absl-py",
             "numpy", "tqdm", "matplotlib", "pytest", "jax-cuda13-plugin", "jax-cuda12-plugin"):
  try:
    info["packages"][name] = md.version(name)
  except md.PackageNotFoundError:
    info["packages"][name] = None
if shutil.which("nvidia-smi"):
  info["nvidia_smi"] = subprocess.run(["nvidia-smi", "-L"], capture_output=True,
                                      text=True).stdout.strip()
print(json.dumps(info, indent=1, default=str))
"""


@dataclasses.dataclass(frozen=True)
class Part:
  name: str
  argv: tuple[str, ...]
  limit_s: float
  env: tuple[tuple[str, str], ...] = ()


def _bench(name: str, models: str, shapes: str, dtype: str, runs: str, epochs: int,
           limit_s: float, out: str) -> Part:
  return Part(name, ("-m", "benchmarks.run", "--models", models, "--shapes", shapes,
                     "--runs", runs, "--epochs", str(epochs), "--feature_dtype", dtype,
                     "--json", os.path.join(out, f"{name}.json")), limit_s)


def plan(out: str, dry: bool) -> list[Part]:
  """The parts of one check, with their limits in seconds (GPU sizes, or tiny ones)."""
  shapes = dict(baby="tiny", tiktok="tiny") if dry else dict(baby="baby", tiktok="tiktok")
  runs = "1" if dry else "1,4,16,64,256,1024"
  epochs = 1 if dry else 2
  # -v: one line per test as it ends, so the log of a cut run still tells which passed.
  tests = ["-m", "pytest", "-v", "-p", "no:cacheprovider", *TEST_FILES, "-k",
           f"({TEST_SELECT}) and hand_computed" if dry else TEST_SELECT,
           "--junitxml", os.path.join(out, "tests.xml")]
  sweep = ["-m", "experiments.sweep", "--grid", "milk_paper", "--noprogress",
           "--workdir", os.path.join(out, "sweep")]
  if dry:
    sweep += ["--seeds", "2", "--epochs", "2", "--set", "eval_every=1"]
    sweep += [a for kv in TINY_DATA for a in ("--set", kv)]
  else:
    sweep += ["--seeds", "32", "--epochs", "20", "--set", "eval_every=5"]
    sweep += [a for kv in TIKTOK_DATA for a in ("--set", kv)]
  eval_floor = ["-m", "benchmarks.eval_floor", "--json", os.path.join(out, "eval_floor.json")]
  eval_floor += (["--users", "300", "--items", "200", "--runs", "1,4", "--reps", "1"] if dry
                 else ["--runs", "1,64,256,1024"])
  return [
      Part("env", ("-c", ENV_SCRIPT), 30),
      Part("setup", ("-m", "benchmarks.gpu", "--install") + (("--dry-run",) if dry else ()),
           45),
      # Tests start subprocesses of their own; each would take 75% of the GPU.
      Part("tests", tuple(tests), 90, (("XLA_PYTHON_CLIENT_PREALLOCATE", "false"),)),
      _bench("bench_milk_baby_float32", "milk", shapes["baby"], "float32", runs, epochs, 70,
             out),
      _bench("bench_milk_tiktok_float32", "milk", shapes["tiktok"], "float32", runs, epochs,
             50, out),
      Part("sweep", tuple(sweep), 75),
      Part("eval_floor", tuple(eval_floor), 35),
      _bench("bench_i3mrec_float32", "i3mrec", ",".join(dict.fromkeys(
          (shapes["tiktok"], shapes["baby"]))), "float32", runs, epochs, 50, out),
      _bench("bench_milk_bfloat16", "milk", ",".join(dict.fromkeys(
          (shapes["baby"], shapes["tiktok"]))), "bfloat16", runs, epochs, 45, out),
      _bench("bench_i3mrec_bfloat16", "i3mrec", shapes["tiktok"], "bfloat16", runs, epochs,
             25, out),
  ]


def run_part(part: Part, python: str, out: str, limit_s: float, dry: bool) -> dict:
  """Runs one part to completion or to its limit; its output goes to OUT/logs/NAME.log."""
  env = dict(os.environ, PYTHONPATH=REPO, PYTHONUNBUFFERED="1", **dict(part.env))
  if dry:
    # Compile times mean nothing at tiny sizes, so the parts share compiled
    # programs (the two MILK float32 parts are the same program there), and
    # XLA skips LLVM's slow passes: compiling is most of a tiny part's time.
    cache = os.path.join(tempfile.gettempdir(), "jaxrec-gpu-dry-run-xla-cache")
    env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=cache,
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               XLA_FLAGS=" ".join([env.get("XLA_FLAGS", ""), *DRY_XLA_FLAGS]).strip())
  log_path = os.path.join(out, "logs", f"{part.name}.log")
  argv = [python, *part.argv]
  start = time.perf_counter()
  with open(log_path, "w") as log:
    log.write(f"$ {_command(part)}\n")
    log.flush()
    # Its own process group, so a cut also ends the tests' and sweep's children.
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
      rc = proc.wait(timeout=limit_s)
      status = "ok" if rc == 0 else f"failed (exit {rc})"
    except subprocess.TimeoutExpired:
      os.killpg(proc.pid, signal.SIGKILL)
      proc.wait()
      rc, status = None, f"cut at its {limit_s:.0f} s limit"
  return dict(name=part.name, command=_command(part), limit_s=round(limit_s, 1),
              seconds=round(time.perf_counter() - start, 1), rc=rc, status=status)


def _command(part: Part) -> str:
  return "python " + (" ".join(part.argv) if part.argv[0] == "-m" else "-c ENV_SCRIPT")


# One printed row of benchmarks.run (it prints each point as soon as it is measured).
_BENCH_ROW = re.compile(
    r"^(?P<model>\S+)\s+(?P<shape>\S+)\s+R=\s*(?P<runs>\d+) compile\s+(?P<compile_s>[\d.]+)s "
    r"epoch\s+(?P<epoch_s>[\d.]+)s\s+(?P<run_epochs_per_s>[\d.]+) run-epochs/s "
    r"eval\s+(?P<eval_s>[\d.]+)s mem/run\s+(?P<mib_per_run>[\d.]+) MiB "
    r"floor (?P<floor_s>[\d.]+)s x(?P<x_floor>[\d.]+)", re.M)


def bench_rows(out: str, name: str) -> list[dict]:
  """A benchmark part's rows: its JSON, or (when it was cut) the rows its log printed."""
  path = os.path.join(out, f"{name}.json")
  if os.path.exists(path):
    with open(path) as f:
      rows = json.load(f)["rows"]
    return [dict(r, mib_per_run=r["bytes_per_run"] / 2**20,
                 floor_s=max(r["flop_floor_s"], r["byte_floor_s"])) for r in rows]
  with open(os.path.join(out, "logs", f"{name}.log")) as f:
    text = f.read()
  return [{k: (v if k in ("model", "shape") else float(v)) for k, v in m.groupdict().items()}
          for m in _BENCH_ROW.finditer(text)]


def tests_summary(out: str) -> dict:
  """Counts from tests.xml, or (pytest cut before writing it) from the -v log's lines."""
  path = os.path.join(out, "tests.xml")
  if not os.path.exists(path):
    log = os.path.join(out, "logs", "tests.log")
    if not os.path.exists(log):
      return {}
    with open(log) as f:
      ends = re.findall(r"^tests/\S+ (PASSED|FAILED|ERROR|SKIPPED)", f.read(), re.M)
    return dict(tests=len(ends), failures=ends.count("FAILED"), errors=ends.count("ERROR"),
                skipped=ends.count("SKIPPED"), cut=True)
  suite = ElementTree.parse(path).getroot()
  suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
  return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def sweep_summary(out: str) -> dict:
  workdir = os.path.join(out, "sweep")
  results = os.path.join(workdir, "results.jsonl")
  n_results = sum(1 for _ in open(results)) if os.path.exists(results) else 0
  with open(os.path.join(out, "logs", "sweep.log")) as f:
    memory_lines = [line.strip() for line in f if line.startswith("memory:")]
  return dict(results=n_results, memory_plan=memory_lines)


def baby_verdict(rows: list[dict]) -> str:
  """The issue's question: is MILK at R >= 256 on the Baby shape within 2x of its floor?"""
  big = [r for r in rows if r["model"] == "milk" and r["shape"] == "baby" and r["runs"] >= 256]
  if not big:
    return "no MILK Baby point at R >= 256 was measured (cut, or did not fit)"
  return "; ".join(f"R={int(r['runs'])}: x{r['x_floor']:.1f} of the floor "
                   f"({'within' if r['x_floor'] <= 2 else 'not within'} 2x)" for r in big)


def write_summary(out: str, parts: list[dict], dry: bool, wall_s: float) -> dict:
  env = {}
  if os.path.exists(os.path.join(out, "logs", "env.log")):
    with open(os.path.join(out, "logs", "env.log")) as f:
      text = f.read()
    start = text.find("\n{\n")
    try:
      env = json.loads(text[start:]) if start >= 0 else {}
    except json.JSONDecodeError:
      env = {}
  rows = [dict(r, part=p["name"]) for p in parts if p["name"].startswith("bench_")
          and p["status"] != "skipped" for r in bench_rows(out, p["name"])]
  eval_rows = []
  if os.path.exists(os.path.join(out, "eval_floor.json")):
    with open(os.path.join(out, "eval_floor.json")) as f:
      eval_rows = json.load(f)["rows"]
  summary = dict(dry_run=dry, wall_s=round(wall_s, 1),
                 date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), env=env,
                 parts=parts, tests=tests_summary(out),
                 sweep=sweep_summary(out) if os.path.exists(
                     os.path.join(out, "logs", "sweep.log")) else {},
                 bench=rows, eval_floor=eval_rows, milk_baby_verdict=baby_verdict(rows))
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1, default=str)
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(summary_markdown(summary))
  return summary


def summary_markdown(s: dict) -> str:
  env = s["env"]
  lines = [f"# GPU check{' (dry run)' if s['dry_run'] else ''}, {s['date']}", "",
           f"Device: {env.get('device_kind', '?')} ({env.get('backend', '?')}), "
           f"Python {env.get('python', '?')}, jax {env.get('packages', {}).get('jax', '?')}; "
           f"memory limit {(env.get('memory_stats') or {}).get('bytes_limit', 'not reported')}; "
           f"wall {s['wall_s']} s.", "",
           "| part | status | seconds | limit s |", "|---|---|---|---|"]
  lines += [f"| {p['name']} | {p['status']} | {p['seconds']} | {p['limit_s']} |"
            for p in s["parts"]]
  t = s["tests"]
  lines += ["", f"Tests: {t.get('tests', 0)} run, {t.get('failures', 0)} failed, "
            f"{t.get('errors', 0)} errors, {t.get('skipped', 0)} skipped.",
            f"Sweep: {s['sweep'].get('results', 0)} results; "
            f"{' '.join(s['sweep'].get('memory_plan', [])) or 'no memory plan printed'}.",
            f"MILK on the Baby shape at R >= 256: {s['milk_baby_verdict']}.", "",
            "| model | shape | dtype | R | compile s | epoch s | run-epochs/s | eval s | "
            "MiB/run | floor s | × floor |", "|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in s["bench"]:
    dtype = r.get("feature_dtype") or r["part"].rsplit("_", 1)[-1]
    lines.append(f"| {r['model']} | {r['shape']} | {dtype} | {int(r['runs'])} | "
                 f"{r['compile_s']:.1f} | {r['epoch_s']:.3f} | {r['run_epochs_per_s']:.2f} | "
                 f"{r['eval_s']:.3f} | {r['mib_per_run']:.1f} | {r['floor_s']:.3f} | "
                 f"{r['x_floor']:.1f} |")
  lines += ["", "| protocol | candidates | R | eval s (all R) | s per run | floor s per run | "
            "× floor |", "|---|---|---|---|---|---|---|"]
  lines += [f"| {r['protocol']} | {r['candidates']} | {r['runs']} | {r['eval_s']:.3g} | "
            f"{r['eval_s_per_run']:.3g} | {r['floor_s_per_run']:.3g} | {r['x_floor']:.1f} |"
            for r in s["eval_floor"]]
  return "\n".join(lines) + "\n"


# What pyproject.toml needs, by import name (the GPU image should hold them all).
REQUIRED_MODULES = ("jax", "flax", "optax", "orbax.checkpoint", "chex", "absl", "numpy",
                    "tqdm", "matplotlib", "pytest")


def install(python: str, dry: bool) -> int:
  """Installs what the interpreter lacks, offline: wheels from .whl/, then jaxrec itself.

  The device has no registry; a missing package must travel as a wheel in .whl/
  (see the device notes). jaxrec goes in editable, without its dependencies;
  if that fails the parts still import it from the checkout (PYTHONPATH).
  """
  def not_installed(modules) -> list[str]:
    # From outside the checkout and without PYTHONPATH: what is really installed?
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = ("import importlib.util, sys\n"
             "def absent(m):\n"
             "  try:\n"
             "    return importlib.util.find_spec(m) is None\n"
             "  except ImportError:\n"
             "    return True\n"
             "print(' '.join(m for m in sys.argv[1:] if absent(m)))")
    found = subprocess.run([python, "-c", probe, *modules], capture_output=True, text=True,
                           cwd=tempfile.gettempdir(), env=env)
    return found.stdout.split() if found.returncode == 0 else list(modules)

  missing = not_installed(REQUIRED_MODULES)
  print(f"missing modules: {missing or 'none'}", flush=True)
  commands = []
  wheels = os.path.join(REPO, ".whl")
  if missing and os.path.isdir(wheels):
    commands.append([python, "-m", "pip", "install", "--no-index", "--no-deps",
                     *sorted(os.path.join(wheels, w) for w in os.listdir(wheels)
                             if w.endswith(".whl"))])
  if not_installed(["jaxrec"]):
    commands.append([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                     "--no-index", "-e", REPO])
  for command in commands:
    print("$ " + " ".join(command) + ("   (dry run: not run)" if dry else ""), flush=True)
    if not dry and subprocess.run(command).returncode != 0:
      print("install failed; the parts import jaxrec from the checkout instead", flush=True)
  still = not_installed(REQUIRED_MODULES) if commands and not dry else missing
  if still:
    print(f"still missing: {still}", flush=True)
  return 1 if still else 0


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default=os.environ.get("OUT") or "gpu_check_out",
                      help="Output folder (default: $OUT, else ./gpu_check_out).")
  parser.add_argument("--dry-run", action="store_true",
                      help="Every part at tiny sizes on CPU (under 3 minutes).")
  parser.add_argument("--budget_s", type=float, default=None,
                      help="Seconds for all parts together (default 480; dry run 300).")
  parser.add_argument("--only", default=None, help="Comma list of parts to run.")
  parser.add_argument("--python", default=sys.executable, help="Interpreter for the parts.")
  parser.add_argument("--install", action="store_true",
                      help="Only install what the interpreter lacks (the setup part).")
  args = parser.parse_args(argv)
  if args.install:
    return install(args.python, args.dry_run)
  out = os.path.abspath(args.out)
  os.makedirs(os.path.join(out, "logs"), exist_ok=True)
  # The dry run takes 110-170 s on the shared 2-core CPU; its budget only keeps
  # a loaded CI machine from failing it, the per-part limits still catch a hang.
  budget = args.budget_s or (300.0 if args.dry_run else 480.0)
  wanted = set(args.only.split(",")) if args.only else None
  start = time.perf_counter()
  done = []
  for part in plan(out, args.dry_run):
    if wanted and part.name not in wanted:
      continue
    left = budget - (time.perf_counter() - start)
    if left < 5:
      done.append(dict(name=part.name, command=_command(part), limit_s=0, seconds=0,
                       rc=None, status="skipped"))
      continue
    # Tiny parts are far inside any limit; a loaded CI machine should not cut them.
    limit = DRY_LIMIT_S if args.dry_run else part.limit_s
    result = run_part(part, args.python, out, min(limit, left), args.dry_run)
    print(f"{result['name']:26s} {result['status']:28s} {result['seconds']:6.1f} s", flush=True)
    done.append(result)
  summary = write_summary(out, done, args.dry_run, time.perf_counter() - start)
  print(f"summary: {os.path.join(out, 'summary.md')} ({summary['wall_s']} s)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
