"""Tests for the InVesalius .inv3 reader and the Cranium sample fetcher."""

import gzip
import io
import os
import plistlib
import shutil
import stat
import tarfile

import numpy as np
import pytest

from rlhf_tf.data import sample_fetch
from rlhf_tf.data.invesalius import read_inv3
from rlhf_tf.data.volume import AXIAL


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def make_inv3(
    path,
    voxels,
    spacing_xyz=(0.8, 0.7, 2.0),
    masks=(),
    dtype_name=None,
    main_overrides=None,
    omit=(),
    compress=True,
    raw_override=None,
):
  """Writes a project laid out like the real Cranium.inv3.

  ``voxels`` is the matrix exactly as stored (rows bottom-up); ``masks`` is a
  list of (name, uint8 array of shape + 1 incl. the buffer voxels).
  """
  voxels = np.asarray(voxels)
  main = {
      'format_version': 1,
      'invesalius_version': 'invesalius3b3',
      'modality': 'CT',
      'name': 'patient name',
      'orientation': 1,
      'spacing': [float(s) for s in spacing_xyz],
      'annotations': {},
      'scalar_range': [int(voxels.min()), int(voxels.max())],
      'window_level': -18.0,
      'window_width': 406.0,
      'measurements': 'measurements.plist',
      'surfaces': {'0': 'surface_0.plist'},
      'matrix': {
          'dtype': dtype_name or voxels.dtype.name,
          'filename': 'matrix.dat',
          'shape': list(voxels.shape),
      },
      'masks': {str(i): f'mask_{i}.plist' for i in range(len(masks))},
  }
  main.update(main_overrides or {})
  files = {
      'main.plist': plistlib.dumps(main),
      'matrix.dat': raw_override
      if raw_override is not None
      else voxels.tobytes(),
      'measurements.plist': plistlib.dumps({}),
      'surface_0.vtp': b'<VTKFile/>' * 100,
  }
  for i, (mask_name, mask) in enumerate(masks):
    files[f'mask_{i}.plist'] = plistlib.dumps(
        {
            'index': i,
            'name': mask_name,
            'mask_file': f'mask_{i}.dat',
            'mask_shape': list(mask.shape),
            'threshold_range': [0, 1],
        }
    )
    files[f'mask_{i}.dat'] = np.asarray(mask, np.uint8).tobytes()
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode='w') as tar:
    for name in sorted(files):
      if name not in omit:
        _add(tar, f'tmpabc123/{name}', files[name])
  data = buf.getvalue()
  path.write_bytes(gzip.compress(data, compresslevel=1) if compress else data)
  return path


def _voxels(shape=(3, 4, 5), seed=0):
  return (
      np.random.default_rng(seed).integers(-1024, 3000, shape).astype(np.int16)
  )


def test_synthetic_project_reads_back_exactly(tmp_path):
  stored = _voxels()
  path = make_inv3(tmp_path / 'head.inv3', stored, spacing_xyz=(0.8, 0.7, 2.0))
  volume = read_inv3(path)
  assert volume.shape == (3, 4, 5)
  # InVesalius stores rows bottom-up; the reader restores DICOM row order.
  np.testing.assert_array_equal(
      volume.hu, stored[:, ::-1, :].astype(np.float32)
  )
  assert volume.hu.dtype == np.float32
  np.testing.assert_allclose(volume.spacing, (2.0, 0.7, 0.8))
  np.testing.assert_array_equal(volume.origin, (0.0, 0.0, 0.0))
  assert volume.orientation == AXIAL
  assert volume.name == 'head'  # file stem, not the patient name
  assert volume.modality == 'CT'
  assert volume.labels is None
  assert read_inv3(path, name='other').name == 'other'


@pytest.mark.parametrize(
    'dtype_name,np_dtype',
    [
        ('uint8', np.uint8),
        ('float32', np.float32),
        ('>i2', np.dtype('>i2')),
        ('int32', np.int32),
    ],
)
def test_dtypes_and_byte_order(tmp_path, dtype_name, np_dtype):
  stored = (_voxels() % 200).astype(np_dtype)
  path = make_inv3(tmp_path / 'a.inv3', stored, dtype_name=dtype_name)
  np.testing.assert_array_equal(read_inv3(path).hu, stored[:, ::-1, :])


def test_plain_uncompressed_tar_is_accepted(tmp_path):
  stored = _voxels()
  path = make_inv3(tmp_path / 'plain.inv3', stored, compress=False)
  np.testing.assert_array_equal(read_inv3(path).hu, stored[:, ::-1, :])


def test_masks_become_labels_with_buffer_dropped_and_nesting_kept(tmp_path):
  shape = (2, 3, 4)
  big = np.zeros((3, 4, 5), np.uint8)
  big[1:, 1:, 1:] = 255
  big[1, 1, 1] = 1  # erased by hand -> outside
  big[0, :, :] = 1  # buffer flags must not leak into the voxels
  small = np.zeros((3, 4, 5), np.uint8)
  small[2, 2, 2] = 254  # added by hand -> inside
  small[2, 3, 4] = 255
  small[:, 0, :] = 255  # buffer
  path = make_inv3(
      tmp_path / 'm.inv3',
      _voxels(shape),
      masks=[('small', small), ('big', big)],
  )
  volume = read_inv3(path)
  assert volume.label_names == ((1, 'small'), (2, 'big'))
  expected = np.full(shape, 2, np.int32)
  expected[0, 0, 0] = 0
  expected[1, 1, 1] = 1
  expected[1, 2, 3] = 1
  np.testing.assert_array_equal(volume.labels, expected[:, ::-1, :])
  assert volume.labels.dtype == np.int32
  assert read_inv3(path, masks=False).labels is None


def _raises(path, match):
  with pytest.raises(ValueError, match=match) as info:
    read_inv3(path)
  assert str(path) in str(info.value)


def test_not_gzip_tar(tmp_path):
  path = tmp_path / 'bad.inv3'
  path.write_text('hello, not a project')
  _raises(path, 'not an InVesalius project')


def test_truncated_archive(tmp_path):
  path = make_inv3(tmp_path / 't.inv3', _voxels((8, 32, 32)))
  data = path.read_bytes()
  path.write_bytes(data[: len(data) // 2])  # cut inside matrix.dat
  _raises(path, 'corrupt or truncated')


def test_missing_main_plist(tmp_path):
  path = make_inv3(tmp_path / 'x.inv3', _voxels(), omit=('main.plist',))
  _raises(path, 'no main.plist')


def test_missing_matrix(tmp_path):
  path = make_inv3(tmp_path / 'x.inv3', _voxels(), omit=('matrix.dat',))
  _raises(path, 'no matrix.dat')


def test_size_mismatch(tmp_path):
  stored = _voxels()
  path = make_inv3(
      tmp_path / 'x.inv3', stored, raw_override=stored.tobytes()[:-2]
  )
  _raises(
      path,
      r'matrix.dat has 118 bytes but shape \[3, 4, 5\] of int16 ' r'needs 120',
  )


def test_unknown_dtype(tmp_path):
  path = make_inv3(tmp_path / 'x.inv3', _voxels(), dtype_name='complex64')
  _raises(path, "unknown matrix dtype 'complex64'")


def test_bad_spacing_and_orientation(tmp_path):
  path = make_inv3(
      tmp_path / 's.inv3', _voxels(), main_overrides={'spacing': [0.9, 0.9]}
  )
  _raises(path, 'spacing')
  path = make_inv3(
      tmp_path / 'o.inv3', _voxels(), main_overrides={'orientation': 2}
  )
  _raises(path, 'only axial')


def test_mask_without_buffer_is_refused(tmp_path):
  mask = np.zeros((3, 4, 5), np.uint8)  # same as image: no buffer voxels
  path = make_inv3(tmp_path / 'x.inv3', _voxels(), masks=[('m', mask)])
  _raises(path, 'plus one buffer voxel')


def test_missing_file_is_file_not_found(tmp_path):
  with pytest.raises(FileNotFoundError, match='nope.inv3'):
    read_inv3(tmp_path / 'nope.inv3')


def test_real_cranium():
  path = sample_fetch.cranium_path()
  if not path.is_file():
    pytest.skip(
        'Cranium.inv3 not fetched: run python -m ' 'rlhf_tf.data.sample_fetch'
    )
  volume = sample_fetch.load_cranium()
  assert volume.shape == (108, 256, 256)
  np.testing.assert_allclose(volume.spacing, (1.5, 0.957, 0.957), atol=1e-3)
  hu = np.asarray(volume.hu)
  # main.plist claims scalar_range -1024..3033; the stored voxels peak at 2986.
  assert hu.min() == -1024
  assert 2900 <= hu.max() <= 3033
  assert -700 < hu.mean() < -500  # mostly air around the head
  assert [n for _, n in volume.label_names] == ['Máscara 1', 'Máscara 2']
  bone = np.asarray(volume.labels) == 1  # mask 1: threshold 226..3071 HU
  assert bone.sum() > 100_000 and hu[bone].min() >= 226
  # Rows are in DICOM order (anterior first): the tooth enamel (> 2000 HU) in
  # the lowest slices sits near row 62; unflipped InVesalius rows put it ~193.
  enamel = hu[:30] > 2000
  rows = np.nonzero(enamel)[1]
  assert enamel.sum() > 100 and rows.mean() < 100


# ---- sample_fetch -----------------------------------------------------------


def test_cache_dir_defaults_to_env(tmp_path, monkeypatch):
  monkeypatch.setenv('RLHF_TF_DATA', str(tmp_path / 'data'))
  assert sample_fetch.cranium_path() == tmp_path / 'data' / 'Cranium.inv3'
  assert sample_fetch.cranium_path(tmp_path) == tmp_path / 'Cranium.inv3'
  monkeypatch.delenv('RLHF_TF_DATA')
  assert sample_fetch.cranium_path().parts[-3:] == (
      '.cache',
      'rlhf_tf',
      'Cranium.inv3',
  )


def test_missing_apt_gives_clear_error(tmp_path, monkeypatch):
  real_which = shutil.which
  monkeypatch.setattr(
      shutil,
      'which',
      lambda t, *a, **k: None if t == 'apt-get' else real_which(t, *a, **k),
  )
  with pytest.raises(sample_fetch.FetchError) as info:
    sample_fetch.fetch_cranium(tmp_path)
  message = str(info.value)
  assert 'apt-get not found' in message
  assert str(tmp_path / 'Cranium.inv3') in message
  assert 'RLHF_TF_DATA' in message
  assert not (tmp_path / 'Cranium.inv3').exists()


def test_load_cranium_absent_names_fetch_command(tmp_path):
  with pytest.raises(
      FileNotFoundError, match='python -m rlhf_tf.data.sample_fetch'
  ):
    sample_fetch.load_cranium(tmp_path)


def test_cached_file_is_not_downloaded_again(tmp_path, monkeypatch):
  (tmp_path / 'Cranium.inv3').write_bytes(b'cached')
  monkeypatch.setattr(shutil, 'which', lambda *a, **k: None)  # no apt at all
  assert sample_fetch.fetch_cranium(tmp_path) == tmp_path / 'Cranium.inv3'


def test_refuses_to_write_into_the_repository(monkeypatch):
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with pytest.raises(sample_fetch.FetchError, match='inside the repository'):
    sample_fetch.fetch_cranium(os.path.join(repo, 'data_cache'))
  assert not os.path.exists(os.path.join(repo, 'data_cache'))


def _script(path, body):
  path.write_text('#!/bin/sh\n' + body)
  path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_fetch_pipeline_with_fake_apt(tmp_path, monkeypatch):
  """Fake apt-get (unknown package until `update`) and dpkg-deb on PATH."""
  voxels = np.zeros((108, 256, 256), np.int16)
  inv3 = make_inv3(
      tmp_path / 'src.inv3', voxels, spacing_xyz=(0.957, 0.957, 1.5)
  )
  # The fake .deb is just the data tar that dpkg-deb --fsys-tarfile prints.
  data_tar = tmp_path / 'data.tar'
  with tarfile.open(data_tar, 'w') as tar:
    tar.add(inv3, './usr/share/doc/invesalius-examples/examples/Cranium.inv3')
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir()
  state = tmp_path / 'updated'
  _script(
      bin_dir / 'apt-get',
      f"""
case "$1" in
  update) touch {state}; exit 0;;
  download)
    if [ ! -e {state} ]; then
      echo "E: Unable to locate package $2" >&2; exit 100
    fi
    cp {data_tar} ./invesalius-examples_9.9_all.deb;;
esac
""",
  )
  _script(bin_dir / 'dpkg-deb', 'cat "$2"\n')
  monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
  cache = tmp_path / 'cache'
  path = sample_fetch.fetch_cranium(cache)
  assert path == cache / 'Cranium.inv3'
  assert state.exists()  # the unknown package triggered one apt-get update
  assert path.read_bytes() == inv3.read_bytes()
  assert sorted(p.name for p in cache.iterdir()) == ['Cranium.inv3']
  assert sample_fetch.main(['--cache-dir', str(cache)]) == 0
