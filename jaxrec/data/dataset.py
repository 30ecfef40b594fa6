"""The one in-memory dataset value that every reader and generator returns."""
from __future__ import annotations

import dataclasses
import functools

import numpy as np


def l2_normalise(x: np.ndarray) -> np.ndarray:
  """Row-wise `x / max(||x||, 1e-12)` in float32 (a zero row stays zero)."""
  x = np.asarray(x, np.float32)
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


@dataclasses.dataclass(frozen=True)
class Dataset:
  """Implicit-feedback interactions plus per-item modality features (host NumPy).

  Attributes:
    name: short name used in results.
    n_users, n_items: id ranges (ids are dense, 0-based).
    pairs: (N, 2) int32 (user, item) positive interactions, no duplicates.
    features: per modality, an (n_items, d_m) float array (any width).
    modality_names: one name per modality.
    available: (n_items, M) bool natural availability (False = the data itself
      lacks that modality for that item); all True when nothing is missing.
  """
  name: str
  n_users: int
  n_items: int
  pairs: np.ndarray
  features: tuple[np.ndarray, ...]
  modality_names: tuple[str, ...]
  available: np.ndarray

  @property
  def n_modalities(self) -> int:
    return len(self.features)

  @functools.cached_property
  def normalised_features(self) -> tuple[np.ndarray, ...]:
    """Row-wise L2-normalised float32 features, computed once per dataset."""
    return tuple(l2_normalise(f) for f in self.features)

  @property
  def feature_dims(self) -> tuple[int, ...]:
    return tuple(int(f.shape[1]) for f in self.features)
