"""The docs a newcomer reads are current: model cards match the model files."""
import os

from experiments import model_cards
from jaxrec.models import REGISTRY

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_model_card_is_generated_from_its_model_file():
  assert model_cards.stale() == [], "run: python -m experiments.model_cards"


def test_a_card_carries_the_docstring_deviations_and_every_hparam():
  text = model_cards.card(REGISTRY["mgcn"])
  assert "**[D]** M modalities" in text
  for h in REGISTRY["mgcn"].hparams:
    assert f"| `{h.name}` |" in text


def test_readme_links_each_model_card_and_the_docs():
  readme = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
  for name in REGISTRY:
    assert f"docs/models/{name}.md" in readme, name
  for doc in ("docs/protocol.md", "docs/results.md", "docs/parity.md"):
    assert doc in readme and os.path.exists(os.path.join(REPO, doc)), doc
