"""Bad input is refused in one line naming the file; what is repaired is counted, as data.

Data files (ids, .npy features, manifests), the results file and checkpoints,
each broken the ways real ones break.
"""
import json
import os
import warnings

import numpy as np
import pytest

from jaxrec import results
from jaxrec.data import features, loading, protocol, readers
from jaxrec.errors import InputError
from tests.test_readers import N_ITEMS, _milk, _tsvs


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
  monkeypatch.setenv("JAXREC_CACHE", str(tmp_path / "cache"))


def _refused(folder, fragments, **kwargs):
  """Loads `folder`, expecting one InputError line that holds every fragment."""
  with pytest.raises(InputError) as err:
    loading.load(str(folder), **kwargs)
  message = str(err.value)
  assert "\n" not in message
  for fragment in fragments:
    assert fragment in message, message
  return message


def _append(path, text):
  with open(path, "a") as f:
    f.write(text)


# -------------------------------------------------------------------- ids ---

@pytest.mark.parametrize("stray", [30_000_000, 2**32 + 1])
def test_one_stray_user_id_is_refused_by_file_line_and_range(tmp_path, stray):
  _tsvs(tmp_path)
  _append(tmp_path / "test.tsv", f"{stray}\t1\n")
  _refused(tmp_path, ["test.tsv: line 3: user id", str(stray),
                      "expected dense ids in [0, 1030)", "remap_users=True"])


def test_an_id_beyond_64_bits_is_refused(tmp_path):
  _tsvs(tmp_path)
  _append(tmp_path / "val.tsv", "99999999999999999999\t1\n")
  _refused(tmp_path, ["val.tsv: line 3", "beyond 64 bits"])


def test_gaps_within_the_rule_are_kept(tmp_path):
  _tsvs(tmp_path, train="0\t1\n0\t2\n1\t3\n900\t2\n")
  assert loading.load(str(tmp_path)).dataset.n_users == 901


def test_remapping_says_which_ids_changed(tmp_path):
  _tsvs(tmp_path, train="0\t1\n0\t2\n1\t3\n30000000\t2\n", test="1\t0\n30000000\t4\n")
  loaded = loading.load(str(tmp_path), remap_users=True)
  assert loaded.dataset.n_users == 3
  np.testing.assert_array_equal(loaded.own_splits["test"], [[1, 0], [2, 4]])
  assert loaded.warnings == ("remapped user ids: 3 distinct ids in [0, 30000000] "
                             "renumbered 0..2 in sorted order; 1 ids changed (the first: "
                             "30000000 -> 2)",)


def test_movielens_user_ids_are_checked_too(tmp_path):
  from tests.test_readers import _movielens
  _movielens(tmp_path, body="1\t2\t5\t9\n40000000\t3\t5\t9\n")
  _refused(tmp_path, ["u.data: line 2: user id 39999999 (0-based)"])


# -------------------------------------------------------------- warnings ---

def test_repairs_are_counted_warnings_and_nothing_is_printed(tmp_path, capsys):
  _tsvs(tmp_path, train="0\t1\n0\t1\n0\t2\n1\t3\n", val="0\t4\n3\t4\n3\t2\n",
        test="1\t0\n0\t2\n")
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    loaded = loading.load(str(tmp_path))
  assert capsys.readouterr() == ("", "")
  text = "\n".join(loaded.warnings)
  assert "train.tsv: dropped 1 duplicate (user, item) pairs within split 'train'" in text
  assert "test.tsv: dropped 1 (user, item) pairs of split 'test' already in an earlier" in text
  assert "val.tsv: 1 users of split 'val' (2 pairs) have no training pairs" in text
  assert loading.load(str(tmp_path), use_cache=True).warnings == loaded.warnings
  loading._load.cache_clear()                     # the disk cache keeps them too
  assert loading.load(str(tmp_path)).warnings == loaded.warnings


def test_users_without_training_pairs_are_not_evaluated_on_the_own_split(tmp_path):
  _tsvs(tmp_path, val="0\t4\n3\t4\n", test="1\t0\n3\t0\n")
  loaded = loading.load(str(tmp_path))
  assert len(loaded.own_splits["val"]) == 2       # the data keeps them
  split = protocol.warm_split(loaded.dataset, loaded.own_splits)
  np.testing.assert_array_equal(split.val_pairs, [[0, 4]])
  np.testing.assert_array_equal(split.test_pairs, [[1, 0]])


def test_a_milk_pair_on_the_wrong_side_of_the_cold_items(tmp_path):
  _milk(tmp_path, train="0 1 2\n1 3 0\n", test="1 4\n")   # item 0 is a cold item
  loaded = loading.load(str(tmp_path))
  with pytest.raises(InputError, match=r"train pair \(user 1, item 0\): expected a warm"):
    protocol.own_new_item_split(loaded.dataset, loaded.own_splits)


# -------------------------------------------------------------- features ---

def _save(folder, name, array, **kwargs):
  np.save(os.path.join(folder, name), array, **kwargs)


def test_a_pickled_npy_is_refused_by_name(tmp_path):
  _tsvs(tmp_path)
  _save(tmp_path, "text_feat.npy", np.array([{"a": 1}] * N_ITEMS, dtype=object),
        allow_pickle=True)
  _refused(tmp_path, ["text_feat.npy: holds pickled Python objects", "numpy.save"])


def test_a_truncated_npy_is_refused_by_name(tmp_path):
  _tsvs(tmp_path)
  path = tmp_path / "image_feat.npy"
  path.write_bytes(path.read_bytes()[:-4])
  _refused(tmp_path, ["image_feat.npy: truncated"])


def test_a_file_that_is_not_npy(tmp_path):
  _tsvs(tmp_path)
  np.savez(tmp_path / "x.npz", a=np.zeros(3))
  os.replace(tmp_path / "x.npz", tmp_path / "text_feat.npy")
  _refused(tmp_path, ["text_feat.npy: not a .npy array"])


def test_features_of_the_wrong_shape(tmp_path):
  _tsvs(tmp_path)
  _save(tmp_path, "text_feat.npy", np.zeros((N_ITEMS, 0), np.float32))
  _refused(tmp_path, ["text_feat.npy: expected a 2-D float array", "(5, 0)"])
  _save(tmp_path, "text_feat.npy", np.zeros((N_ITEMS - 1, 3), np.float32))
  _refused(tmp_path, ["text_feat.npy: 4 rows, expected 5 rows"])


def test_text_that_is_not_utf8(tmp_path):
  _tsvs(tmp_path)
  (tmp_path / "val.tsv").write_bytes(b"userID\titemID\n0\t\xff\n")
  _refused(tmp_path, ["val.tsv: byte 16 is not UTF-8"])


def _encoder_named(folder):
  """A folder whose features are named after their encoders, as real ones often are."""
  _tsvs(folder)
  for name in ("image_feat.npy", "text_feat.npy"):
    os.remove(os.path.join(folder, name))
  _save(folder, "vggish.npy", np.ones((N_ITEMS, 4), np.float32))
  _save(folder, "resnet152.npy", np.ones((N_ITEMS, 6), np.float16))
  return str(folder)


def test_no_feature_file_lists_the_npy_files_there(tmp_path):
  _refused(_encoder_named(tmp_path), ["no feature file found", "modalities.json",
                                      "modalities=name:file.npy",
                                      ".npy files resnet152.npy, vggish.npy"])


def test_modalities_named_by_file(tmp_path):
  folder = _encoder_named(tmp_path)
  loaded = loading.load(folder, modalities="audio:vggish.npy,image:resnet152.npy")
  assert loaded.dataset.modality_names == ("audio", "image")
  assert loaded.dataset.feature_dims == (4, 6)
  assert loaded.dataset.features[1].dtype == np.float32
  _refused(folder, ["modality file 'audio:clip.npy' not found",
                    ".npy files resnet152.npy, vggish.npy"], modalities="audio:clip.npy")


def test_a_manifest_names_the_files(tmp_path):
  folder = _encoder_named(tmp_path)
  with open(os.path.join(folder, features.MANIFEST), "w") as f:
    json.dump({"image": "resnet152.npy", "audio": "vggish.npy"}, f)
  assert loading.load(folder).dataset.modality_names == ("image", "audio")
  assert loading.load(folder, modalities="audio").dataset.modality_names == ("audio",)
  with open(os.path.join(folder, features.MANIFEST), "w") as f:
    f.write('{"image": "resnet152.npy",')
  _refused(folder, ["modalities.json: not readable JSON"])
  with open(os.path.join(folder, features.MANIFEST), "w") as f:
    json.dump({"image": 3}, f)
  _refused(folder, ["modalities.json: got {\"image\": 3}, expected"])


@pytest.mark.parametrize("text, expected", [
    ("", None), (" , ", None), ("a,v", (("a", None), ("v", None))),
    ("audio:vggish.npy, image", (("audio", "vggish.npy"), ("image", None))),
    ("image:features/clip.npy", (("image", "features/clip.npy"),))])
def test_parse_modalities(text, expected):
  assert loading.parse_modalities(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("audio:", "expected 'name' or 'name:file.npy'"),
    (":vggish.npy", "expected 'name' or 'name:file.npy'"),
    ("a,b,a", "['a'] named more than once"),
    ("a:../x.npy", "inside the data folder"), ("a:x.txt", "expected a .npy file")])
def test_parse_modalities_refuses(text, fragment):
  with pytest.raises(InputError, match="modalities: ") as err:
    loading.parse_modalities(text)
  assert fragment in str(err.value)


# ----------------------------------------------------------- fingerprint ---

def test_fingerprint_names_every_file_read_and_what_changed(tmp_path):
  folder = _tsvs(tmp_path)
  _save(folder, "image_mask.npy", np.ones(N_ITEMS, bool))
  _save(folder, "unused.npy", np.ones(3))
  loaded = loading.load(folder)
  old = loading.data_fingerprint(folder)
  assert old == loaded.fingerprint
  assert sorted(old) == ["image_feat.npy", "image_mask.npy", "test.tsv", "text_feat.npy",
                         "train.tsv", "val.tsv"]
  assert all(len(h) == 64 for h in old.values())            # sha256, as sha256sum prints
  assert loading.fingerprint_changes(old, loading.data_fingerprint(folder)) is None
  _append(os.path.join(folder, "train.tsv"), "1\t1\n")
  _save(folder, "text_feat.npy", np.zeros((N_ITEMS, 3), np.float32))
  message = loading.fingerprint_changes(old, loading.data_fingerprint(folder))
  assert message.startswith("the data changed since this work directory was started: "
                            "edited text_feat.npy, train.tsv (sha256 differs)")
  assert "\n" not in message
  with open(os.path.join(folder, features.MANIFEST), "w") as f:
    json.dump({"image": "image_feat.npy"}, f)
  message = loading.fingerprint_changes(old, loading.data_fingerprint(folder))
  assert "added modalities.json; removed text_feat.npy" in message
  assert loading.fingerprint_changes({}, {}) is None
  assert loading.data_fingerprint("synthetic") == {}


def test_the_cache_key_covers_masks_and_the_manifest(tmp_path):
  folder = _tsvs(tmp_path)
  first = loading.load(folder)
  _save(folder, "image_mask.npy", np.array([1, 0, 1, 1, 1], bool))
  second = loading.load(folder)
  assert second.key != first.key and not second.dataset.available[1, 0]


# --------------------------------------------------------------- results ---

def _records(n, start=0):
  return [{"run_id": f"r{k}", "test": {"recall@20": k / 10}} for k in range(start, start + n)]


def test_an_append_after_a_torn_line_loses_nothing(tmp_path):
  path = str(tmp_path / "results.jsonl")
  results.append_jsonl(path, _records(2))
  _append(path, json.dumps(_records(1, 2)[0])[:25])      # killed mid-line
  torn = results.scan_jsonl(path)
  assert [r["run_id"] for r in torn.records] == ["r0", "r1"]
  assert len(torn.problems) == 1 and "line 3: a torn last record of 25" in torn.problems[0]
  results.append_jsonl(path, _records(2, 2))              # the rerun's records
  again = results.scan_jsonl(path)
  assert [r["run_id"] for r in again.records] == ["r0", "r1", "r2", "r3"]
  assert again.problems == ()
  assert open(path + results.TORN_SUFFIX).read() == json.dumps(_records(1, 2)[0])[:25] + "\n"


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path):
  path = str(tmp_path / "results.jsonl")
  with open(path, "w") as f:
    f.write(json.dumps(_records(1)[0]))
  results.append_jsonl(path, _records(1, 1))
  assert [r["run_id"] for r in results.read_jsonl(path)] == ["r0", "r1"]
  assert not os.path.exists(path + results.TORN_SUFFIX)


def test_a_record_glued_onto_a_fragment_is_recovered(tmp_path):
  """What writers before the repair left: a rerun's record appended onto the fragment."""
  path = str(tmp_path / "results.jsonl")
  lines = [json.dumps(r, sort_keys=True) for r in _records(3)]
  with open(path, "w") as f:
    f.write(lines[0] + "\n" + lines[1][:30] + lines[1] + "\n" + lines[2] + "\n")
  scanned = results.scan_jsonl(path)
  assert [r["run_id"] for r in scanned.records] == ["r0", "r1", "r2"]
  assert "line 2: skipped a torn fragment of 30 characters" in scanned.problems[0]
  with pytest.warns(UserWarning, match="torn fragment"):
    assert len(results.read_jsonl(path)) == 3


def test_a_damaged_middle_line_is_refused_by_number(tmp_path):
  path = str(tmp_path / "results.jsonl")
  with open(path, "w") as f:
    f.write(json.dumps(_records(1)[0]) + "\nnot json\n" + json.dumps(_records(1, 1)[0]) + "\n")
  with pytest.raises(InputError, match=r"results.jsonl: line 2: not a JSON record.*move"):
    results.read_jsonl(path)


# ----------------------------------------------------------- checkpoints ---

def _checkpointer(tmp_path):
  import jax.numpy as jnp
  from jaxrec.engine.checkpoint import GroupCheckpointer
  state = {"params": jnp.arange(64.0), "aux": jnp.ones((3, 4))}
  ckpt = GroupCheckpointer(str(tmp_path / "group"))
  for epoch in (4, 8):
    ckpt.save(epoch, state, {"eval_history": list(range(epoch))})
  return ckpt, state


def _truncate_arrays(step_dir):
  files = [os.path.join(r, n) for r, _, ns in os.walk(os.path.join(step_dir, "state"))
           for n in ns if os.sep + "d" + os.sep in os.path.join(r, n)]
  for path in files:
    with open(path, "r+b") as f:
      f.truncate(os.path.getsize(path) // 2)


def _damage_meta(step_dir):
  with open(os.path.join(step_dir, "meta", "metadata"), "w") as f:
    f.write('{"eval_history": [0, 1')


@pytest.mark.parametrize("damage", [_truncate_arrays, _damage_meta])
def test_a_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
  from jaxrec.engine.checkpoint import GroupCheckpointer
  ckpt, state = _checkpointer(tmp_path)
  damage(str(tmp_path / "group" / "8"))
  again = GroupCheckpointer(str(tmp_path / "group"))
  epoch, restored, meta = again.restore(state)
  assert epoch == 4 and meta == {"eval_history": [0, 1, 2, 3]}
  np.testing.assert_array_equal(restored["params"], state["params"])
  assert len(again.skipped) == 1 and "epoch 8 is damaged" in again.skipped[0]
  again.save(8, state, {"eval_history": []})             # training goes on past it
  assert GroupCheckpointer(str(tmp_path / "group")).restore(state)[0] == 8


def test_no_readable_checkpoint_names_the_directory_and_what_to_do(tmp_path):
  from jaxrec.engine.checkpoint import GroupCheckpointer
  _, state = _checkpointer(tmp_path)
  _damage_meta(str(tmp_path / "group" / "8"))
  _truncate_arrays(str(tmp_path / "group" / "4"))
  with pytest.raises(InputError) as err:
    GroupCheckpointer(str(tmp_path / "group")).restore(state)
  message = str(err.value)
  assert "\n" not in message and str(tmp_path / "group") in message
  assert "epochs 8, 4" in message and "delete that directory to restart this group" in message


# ---------------------------------------------------------------- layouts ---

def test_the_no_layout_message_lists_the_folder(tmp_path):
  (tmp_path / "ratings.csv").write_text("u,i\n")
  (tmp_path / "img").mkdir()
  message = _refused(tmp_path, ["no known layout", "the folder has img/, ratings.csv"])
  for layout in readers.LAYOUTS:
    assert f"{layout.marker} ({layout.name})" in message


def test_a_file_the_layout_needs_is_missing(tmp_path):
  _tsvs(tmp_path)
  os.remove(tmp_path / "val.tsv")
  _refused(tmp_path, ["val.tsv: file not found, expected in the pair TSVs layout",
                      "train.tsv, val.tsv, test.tsv"])
  os.mkdir(tmp_path / "m")
  _milk(tmp_path / "m")
  os.remove(tmp_path / "m" / "cold_item_index.npy")
  _refused(tmp_path / "m", ["cold_item_index.npy: file not found"])


def test_a_byte_order_mark_is_not_part_of_the_header(tmp_path):
  _tsvs(tmp_path)
  text = (tmp_path / "train.tsv").read_text()
  (tmp_path / "train.tsv").write_text("\ufeff" + text, encoding="utf-8")
  assert len(loading.load(str(tmp_path)).own_splits["train"]) == 3


# ------------------------------------------- issue 27: said, not silent ---

def test_all_zero_feature_rows_are_a_counted_warning_naming_file_and_rows(tmp_path):
  _tsvs(tmp_path)
  image = np.load(tmp_path / "image_feat.npy")
  image[[1, 3]] = 0
  np.save(tmp_path / "image_feat.npy", image)
  (warning,) = loading.load(str(tmp_path)).warnings
  assert "image_feat.npy: 2 rows are all zero (rows 1, 3)" in warning, warning
  assert "used as real features" in warning and "image_mask.npy" in warning
  # A mask that marks them missing agrees: nothing to say.
  np.save(tmp_path / "image_mask.npy", np.array([True, False, True, False, True]))
  assert loading.load(str(tmp_path)).warnings == ()
  # One that marks a zero row observed disagrees, and is named.
  np.save(tmp_path / "image_mask.npy", np.array([True, True, True, False, True]))
  (warning,) = loading.load(str(tmp_path)).warnings
  assert "1 rows are all zero (rows 1) but image_mask.npy marks them observed" in warning


def test_an_all_false_mask_is_refused_naming_file_and_modality(tmp_path):
  _tsvs(tmp_path)
  np.save(tmp_path / "text_mask.npy", np.zeros(N_ITEMS, bool))
  _refused(tmp_path, ["text_mask.npy: marks every item's 'text' missing (all False)"])


def test_a_manifest_naming_a_missing_file_says_where_the_name_came_from(tmp_path):
  folder = _encoder_named(tmp_path)
  with open(os.path.join(folder, features.MANIFEST), "w") as f:
    json.dump({"image": "resnet152.npy", "audio": "whisper.npy"}, f)
  _refused(folder, ["modality file 'audio:whisper.npy' (named in modalities.json) not found",
                    ".npy files resnet152.npy, vggish.npy"])


def test_one_named_feature_and_an_unnamed_file_names_the_file_left_unread(tmp_path):
  _tsvs(tmp_path)
  os.rename(tmp_path / "text_feat.npy", tmp_path / "whisper.npy")
  loaded = loading.load(str(tmp_path))
  assert loaded.dataset.modality_names == ("image",)
  with pytest.raises(InputError) as err:
    loading.check_modalities(str(tmp_path), "", loaded.dataset, "milk", 2)
  message = str(err.value)
  assert "needs at least 2 modalities" in message and "not read: whisper.npy" in message
  assert "--set modalities=" in message, message


def test_a_trailing_blank_line_is_accepted(tmp_path):
  _tsvs(tmp_path, train="0\t1\n0\t2\n1\t3\n\n", val="0\t4\n \n\n")
  loaded = loading.load(str(tmp_path))
  assert len(loaded.own_splits["train"]) == 3 and len(loaded.own_splits["val"]) == 1


def test_the_own_split_warning_only_where_that_split_is_used(tmp_path):
  _tsvs(tmp_path, val="0\t4\n3\t4\n")          # user 3 has no training pair
  loaded = loading.load(str(tmp_path))
  assert any("own split" in w for w in loading.warnings_for(loaded, "warm"))
  assert loading.warnings_for(loaded, "new_item") == ()     # a seeded split: not used


def test_a_read_only_cache_is_one_line_naming_it_and_the_data_still_loads(
    tmp_path, monkeypatch, capsys):
  import errno
  from jaxrec.data import cache

  def read_only(path, **arrays):
    raise OSError(errno.EROFS, "Read-only file system", path)
  monkeypatch.setattr(cache.np, "savez", read_only)
  monkeypatch.setattr(cache, "_warned_dirs", set())
  os.makedirs(tmp_path / "data")
  _tsvs(tmp_path / "data")
  loaded = loading.load(str(tmp_path / "data"))
  loading.make_split(loaded, protocol_name="new_item", split_seed=0, new_fraction=0.4)
  assert loaded.dataset.n_items == N_ITEMS
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1, err                          # once, not per entry
  assert "the data cache" in err[0] and str(tmp_path / "cache") in err[0]
  assert "Read-only file system" in err[0] and "JAXREC_CACHE" in err[0]
  assert not [f for f in os.listdir(tmp_path / "cache") if f.endswith(".tmp.npz")]


def test_typos_get_a_did_you_mean():
  from experiments import configs
  from jaxrec.grid import Grid, apply_overrides
  with pytest.raises(ValueError, match=r"unknown grid 'missing_rate' \(did you mean "
                                       r"'missing_rates'\?\)"):
    configs.get_grid("missing_rate")
  with pytest.raises(ValueError, match=r"penalty_wieght: no model of this grid reads it "
                                       r"\(did you mean 'penalty_weight'\?\)"):
    Grid(base=dict(penalty_wieght=1.0), axes={}).check()
  with pytest.raises(ValueError, match=r"did you mean 'penalty_weight'"):
    apply_overrides(configs.get_grid("smoke"), sets=["penalty_wieght=3"])


def test_a_full_disk_is_not_device_out_of_memory():
  from jaxrec.engine import memory
  from jaxrec.errors import is_disk_full
  # What TensorStore (orbax's writer) raises on ENOSPC, and what XLA raises on a full GPU.
  disk = ValueError('RESOURCE_EXHAUSTED: Error writing "p/0" in OCDBT database at local file '
                    '"/w/checkpoints/g/1.orbax-checkpoint-tmp/": Failed to write 979325 bytes '
                    "to file 14: No space left on device [os_error_code='28']")
  device = RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 1.2GiB")
  assert is_disk_full(disk) and not memory.is_out_of_memory(disk)
  assert memory.is_out_of_memory(device) and not is_disk_full(device)
  import errno
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device")
    except OSError as cause:
      raise RuntimeError("writing failed") from cause
  except RuntimeError as err:
    assert is_disk_full(err) and not memory.is_out_of_memory(err)
