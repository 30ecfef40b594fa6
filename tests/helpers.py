"""Shared test helpers: paths to the spec fixtures and the shared data."""
import json
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(REPO), "shared")
FIXTURES = os.path.join(SHARED, "spec", "fixtures")


def load_fixture(name: str) -> dict:
  with open(os.path.join(FIXTURES, name)) as f:
    return json.load(f)


def fixture_available(name: str) -> bool:
  return os.path.exists(os.path.join(FIXTURES, name))
