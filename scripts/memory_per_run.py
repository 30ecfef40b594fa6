"""Prints the memory planner's per-run and shared device bytes of a model's group.

  .venv/bin/python scripts/memory_per_run.py freedom ../shared/data/tiktok-diffmm
  .venv/bin/python scripts/memory_per_run.py micro ../shared/data/tiktok-diffmm protocol=new_item setting=fm

Compiles (never runs) one and two runs of the group on the first device, as the
sweep's planner does (`jaxrec.engine.memory.estimate`), with the model's defaults (warm protocol, mm, unless FIELD=VALUE says otherwise).
"""
import sys

from jaxrec.config import make_config
from jaxrec.engine import memory
from jaxrec.engine.inputs import (dataset_for, group_data, group_settings, run_inputs,
                                  split_for)
from jaxrec.models import get_model


def main(model_name: str, data: str, *sets: str) -> None:
  overrides = {"protocol": "warm", "setting": "mm", **dict(s.split("=", 1) for s in sets)}
  cfg = make_config(model=model_name, data=data, **overrides)
  model = get_model(model_name)
  dataset, split = dataset_for(cfg), split_for(cfg)
  spec, settings = group_settings(cfg)
  est = memory.estimate(model, spec, settings, group_data(dataset, split),
                        run_inputs(model, [cfg], dataset, split))
  print(f"{model_name} on {data} ({dataset.n_users} users, {dataset.n_items} items, dims "
        f"{spec.feature_dims}): {memory.describe(est)} "
        f"({est.per_run_bytes / 2**20:.1f} MiB per run)")


if __name__ == "__main__":
  main(*sys.argv[1:])
