"""A folder tree of many DICOM series -> one scene per series."""

import os
import shutil

import jax
import numpy as np
import pydicom
import pytest

from rlhf_tf.data import dicom_series, dicom_write, phantom
from rlhf_tf.jobs import experiment_file
from rlhf_tf.preferences import dataset

SHAPE = (6, 10, 8)


def _volume(seed):
  key = jax.random.key(seed)
  return phantom.make_head_phantom(
      key, SHAPE, config=phantom.patient_config(key)
  )


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  """Three CT series (one split over two folders), an MR series, a report
  without pixels, a DICOMDIR-like object and a stray text file."""
  root = tmp_path_factory.mktemp('export')
  volumes = {}
  for i, folder in enumerate(
      ('patient_a/ct', 'patient_b/study/ct', 'patient_c')
  ):
    vol = _volume(i)
    dicom_write.write_dicom_series(
        vol,
        root / folder,
        series_description=f'head {i}',
        uid_seed=f'series-{i}',
    )
    volumes[f'head {i}'] = vol
  # Series 1's second half moves to a sibling folder: grouping is by UID.
  moved = root / 'patient_b' / 'study' / 'ct_part2'
  moved.mkdir()
  for path in sorted((root / 'patient_b/study/ct').glob('*.dcm'))[3:]:
    shutil.move(str(path), moved / path.name)
  mr = dicom_write.write_dicom_series(
      _volume(7), root / 'patient_a' / 'mr', uid_seed='mr'
  )
  for path in mr:
    ds = pydicom.dcmread(path)
    ds.Modality = 'MR'
    ds.save_as(path)
  report = pydicom.dcmread(mr[0])
  del report.PixelData
  report.SeriesInstanceUID = '1.2.3.4.5'
  report.Modality = 'SR'
  report.save_as(root / 'patient_c' / 'report.dcm')
  dicomdir = pydicom.dcmread(mr[0])
  del dicomdir.SeriesInstanceUID
  dicomdir.save_as(root / 'DICOMDIR')
  (root / 'README.txt').write_text('exported by a PACS')
  return root, volumes


def test_each_series_is_found_once_over_the_whole_tree(tree):
  root, volumes = tree
  listing = dicom_series.find_series(root)
  assert sorted(s.description for s in listing.series) == sorted(volumes)
  assert [len(s.files) for s in listing.series] == [SHAPE[0]] * 3
  split = [s for s in listing.series if s.description == 'head 1'][0]
  assert split.folder == root / 'patient_b' / 'study'
  text = listing.describe()
  assert '3 image series' in text
  for reason in (
      'not a DICOM file',
      'without SeriesInstanceUID',
      'without pixel data',
      'modality MR',
  ):
    assert reason in text, reason
  assert 'README.txt' in text and 'DICOMDIR' in text


def test_every_series_reads_back_as_its_volume(tree):
  root, volumes = tree
  for info in dicom_series.find_series(root).series:
    vol = dicom_series.read_series(info)
    np.testing.assert_allclose(vol.hu, volumes[info.description].hu, atol=0.5)
    np.testing.assert_allclose(
        vol.spacing, volumes[info.description].spacing, rtol=1e-5
    )


def test_keeping_every_modality_adds_the_mr_series(tree):
  root, _ = tree
  listing = dicom_series.find_series(root, modalities=())
  assert len(listing.series) == 4


def _config(**fields):
  config = experiment_file.load_config(
      os.path.join(
          os.path.dirname(__file__), '..', 'experiments', 'simulate.py:smoke'
      )
  )
  for name, value in fields.items():
    config[name] = value
  return config


def test_a_folder_of_several_series_gives_that_many_scenes(tree):
  root, _ = tree
  specs = dataset.scene_specs(_config(scenes=f'dicom:{root}'))
  assert len(specs) == 3 and len({s.scene_id for s in specs}) == 3
  # The same through config.volume alone.
  config = _config()
  config.volume.source = 'dicom'
  config.volume.path = str(root)
  assert [s.scene_id for s in dataset.scene_specs(config)] == [
      s.scene_id for s in specs
  ]
  # Scene ids do not depend on the order the tree is listed in.
  assert specs[0].volume['series_uid']


def test_a_mixed_scene_list(tree):
  root, _ = tree
  specs = dataset.scene_specs(
      _config(scenes=f'phantom:0-2,phantom:5+9,dicom:{root},cranium')
  )
  ids = [s.scene_id for s in specs]
  assert ids[:5] == [f'phantom-s{s}-24x24x24' for s in (0, 1, 2, 5, 9)]
  assert ids[-1] == 'cranium' and len(ids) == 9
  assert specs[3].volume['seed'] == 5


@pytest.mark.parametrize(
    'bad', ['phantom:a', 'mri:/x', 'inv3', 'dicom:', 'phantom:1,phantom:0-2']
)
def test_bad_scene_entries_are_named(bad):
  with pytest.raises(ValueError, match='scenes'):
    dataset.scene_specs(_config(scenes=bad))


def test_scenes_of_a_tree_are_stored_and_paired_separately(tree, tmp_path):
  root, _ = tree
  config = _config(scenes=f'dicom:{root}')
  config.volume.source = 'dicom'
  config.histogram.bins = 16
  config.render.image_size = 8
  config.pairs.num = 10
  store = dataset.open_store(config, str(tmp_path))
  for spec in dataset.scene_specs(config)[:2]:
    data = dataset.ensure_scene(store, spec, config)
    assert data.scene.volume.shape == SHAPE
    assert data.pairs.max() < len(data.vertices)
    assert len(store.pairs(spec.scene_id)) == 10
  assert len(store.scenes()) == 2
  store.close()
