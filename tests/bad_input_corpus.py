"""A corpus of bad input a real user will hit: DICOM, .inv3, polygons,
actions files, configs and votes (issue 16).

Each ``Case`` builds its input under a temporary folder and returns the call
that must fail; it names the error type that call must raise and the text
the message must contain: the file, config key, polygon or field at fault.
``tests/test_bad_input_corpus.py`` runs every case; the launch test runs a
representative subset through ``launch.py``.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
import plistlib
import tarfile
from typing import Callable, NamedTuple

import numpy as np
import pydicom

from rlhf_tf.data import dicom_frames, dicom_io, invesalius, sources
from rlhf_tf.data import dicom_series as dicom_series_lib
from rlhf_tf.data.dicom_write import write_dicom_series
from rlhf_tf.data.volume import make_volume, VolumeError
from rlhf_tf.input_error import ConfigError, InputError
from rlhf_tf.preferences import dataset, experts, scenes
from rlhf_tf.preferences import store as store_lib
from rlhf_tf.render import histogram, polygon_validation, transfer_function

DicomSeriesError = dicom_frames.DicomSeriesError
Inv3Error = invesalius.Inv3Error
PolygonError = polygon_validation.PolygonError
VoteError = store_lib.VoteError


class Case(NamedTuple):
  kind: str  # dicom | inv3 | polygon | actions | config | vote
  name: str
  build: Callable[[Path], Callable[[], object]]  # tmp -> the failing call
  error: type
  needle: Callable[[Path], str]  # tmp -> text the message must contain


CASES: list[Case] = []


def case(kind, name, error, needle):
  """Registers the decorated builder as a corpus case."""

  def register(build):
    text = needle if callable(needle) else (lambda tmp, n=needle: n)
    CASES.append(Case(kind, name, build, error, text))
    return build

  return register


# ----------------------------------------------------------------- DICOM

SHAPE = (6, 5, 4)


def dicom_series(tmp: Path, n: int = SHAPE[0]) -> list[Path]:
  rng = np.random.default_rng(0)
  hu = rng.integers(-1000, 2000, (n,) + SHAPE[1:]).astype(np.float32)
  volume = make_volume(hu, spacing=(2.0, 0.8, 0.8), name='corpus')
  return write_dicom_series(volume, tmp / 'series')


def edited(tmp: Path, index: int, change) -> Path:
  """A series whose slice ``index`` was changed by change(dataset); invalid
  values (e.g. IS '1A') are written as given, like a broken scanner would."""
  paths = dicom_series(tmp)
  settings = pydicom.config.settings
  modes = settings.reading_validation_mode, settings.writing_validation_mode
  settings.reading_validation_mode = pydicom.config.IGNORE
  settings.writing_validation_mode = pydicom.config.IGNORE
  try:
    ds = pydicom.dcmread(paths[index])
    change(ds)
    pydicom.dcmwrite(paths[index], ds, enforce_file_format=True)
  finally:
    settings.reading_validation_mode, settings.writing_validation_mode = modes
  return paths[index]


def read_series(tmp):
  return lambda: dicom_io.read_dicom_series(tmp / 'series')


def dicom_edit(name, index, change, needle_suffix=''):
  """A case: slice ``index`` edited; the message names that file."""

  def build(tmp):
    edited(tmp, index, change)
    return read_series(tmp)

  needle = lambda tmp, i=index: f'slice_{i:04d}.dcm{needle_suffix}'
  case('dicom', name, DicomSeriesError, needle)(build)


def dicom_cut(name, index, where):
  """A case: slice ``index`` cut short at ``where(raw bytes)``."""

  def build(tmp):
    path = dicom_series(tmp)[index]
    raw = path.read_bytes()
    path.write_bytes(raw[: where(raw)])
    return read_series(tmp)

  case(
      'dicom', name, DicomSeriesError, lambda tmp, i=index: f'slice_{i:04d}.dcm'
  )(build)


def _pixel_tag(raw: bytes) -> int:
  return raw.rfind(b'\xe0\x7f\x10\x00')


for _i, _label in ((0, 'first'), (SHAPE[0] - 1, 'last')):
  dicom_cut(f'{_label} slice cut in the preamble', _i, lambda raw: 100)
  dicom_cut(f'{_label} slice cut after the file meta', _i, lambda raw: 200)
  dicom_cut(f'{_label} slice cut mid header', _i, lambda raw: len(raw) // 2)
  dicom_cut(
      f'{_label} slice cut before PixelData',
      _i,
      lambda raw: _pixel_tag(raw) - 6,
  )
  dicom_cut(
      f'{_label} slice cut inside the pixels', _i, lambda raw: len(raw) - 7
  )
dicom_cut('empty .dcm file', 2, lambda raw: 0)


def dicom_patch(name, index, keyword, vr, placeholder, bad):
  """A case: slice ``index`` holds the invalid text ``bad`` in ``keyword``
  (pydicom refuses to write it, a broken scanner does not): written with a
  valid placeholder of the same length, then patched in the file bytes."""
  assert len(placeholder) == len(bad) and len(bad) % 2 == 0

  def build(tmp):
    path = edited(tmp, index, _set(keyword, placeholder))
    tag = pydicom.datadict.tag_for_keyword(keyword)
    head = (
        (tag >> 16).to_bytes(2, 'little')
        + (tag & 0xFFFF).to_bytes(2, 'little')
        + vr.encode()
        + len(bad).to_bytes(2, 'little')
    )
    raw = path.read_bytes()
    assert raw.count(head + placeholder.encode()) == 1
    path.write_bytes(
        raw.replace(head + placeholder.encode(), head + bad.encode())
    )
    return read_series(tmp)

  case(
      'dicom', name, DicomSeriesError, lambda tmp, i=index: f'slice_{i:04d}.dcm'
  )(build)


@case(
    'dicom',
    "pydicom's badVR.dcm (NumberOfFrames '1A')",
    DicomSeriesError,
    'badVR.dcm',
)
def _bad_vr(tmp):
  path = pydicom.data.get_testdata_file('badVR.dcm')
  return lambda: dicom_io.read_dicom_series(path)


def _set(keyword, value):
  return lambda ds: setattr(ds, keyword, value)


def _delete(keyword):
  return lambda ds: delattr(ds, keyword)


dicom_patch('NumberOfFrames "1A"', 1, 'NumberOfFrames', 'IS', '11', '1A')
dicom_edit('NumberOfFrames 0', 1, _set('NumberOfFrames', '0'))
dicom_patch(
    'InstanceNumber not a number', 1, 'InstanceNumber', 'IS', '72', '7x'
)
dicom_edit('Rows 0', 2, lambda ds: setattr(ds, 'Rows', 0))
dicom_edit('Columns missing', 2, _delete('Columns'))
dicom_patch(
    'PixelSpacing text', 3, 'PixelSpacing', 'DS', '0.80\\0.8', 'a.bc\\0.8'
)
dicom_edit('PixelSpacing one value', 3, _set('PixelSpacing', ['0.8']))
dicom_edit('PixelSpacing missing', 3, _delete('PixelSpacing'))
dicom_edit('PixelSpacing differs', 3, _set('PixelSpacing', ['0.9', '0.8']))
dicom_edit(
    'orientation 5 values',
    0,
    _set('ImageOrientationPatient', ['1', '0', '0', '0', '1']),
)
dicom_edit(
    'orientation differs',
    4,
    _set('ImageOrientationPatient', ['1', '0', '0', '0', '0.8', '0.6']),
)
dicom_edit('position 2 values', 4, _set('ImagePositionPatient', ['0', '0']))
dicom_edit('position NaN', 4, _set('ImagePositionPatient', ['0', 'nan', '1']))
dicom_edit('RescaleSlope 0', 1, _set('RescaleSlope', '0'))
dicom_patch('RescaleSlope text', 1, 'RescaleSlope', 'DS', '1.0 ', 'x.y ')
dicom_edit('RescaleSlope overflows float32', 1, _set('RescaleSlope', '1e38'))
dicom_edit('missing PixelData', 5, _delete('PixelData'))
dicom_edit(
    'Rows differ',
    5,
    lambda ds: (
        setattr(ds, 'Rows', 4),
        setattr(ds, 'PixelData', ds.PixelData[:32]),
    ),
)
dicom_edit(
    'duplicated slice position',
    3,
    lambda ds: setattr(
        ds,
        'ImagePositionPatient',
        pydicom.dcmread(
            ds.filename.replace('0003', '0002')
        ).ImagePositionPatient,
    ),
)
for _modality in ('MR', 'NM', 'PT', 'RTDOSE'):
  dicom_edit(f'modality {_modality}', 0, _set('Modality', _modality))


@case('dicom', 'missing slice', DicomSeriesError, 'slice_0002.dcm')
def _missing_slice(tmp):
  dicom_series(tmp)[3].unlink()
  return read_series(tmp)


@case(
    'dicom',
    'first slice cut short, found by the multi-series scan',
    DicomSeriesError,
    'slice_0000.dcm',
)
def _cut_in_a_tree(tmp):
  first = dicom_series(tmp)[0]
  first.write_bytes(first.read_bytes()[:600])
  return lambda: dicom_series_lib.find_series(tmp)


@case('dicom', 'no such folder', DicomSeriesError, 'nowhere')
def _no_folder(tmp):
  return lambda: dicom_io.read_dicom_series(tmp / 'nowhere')


@case('dicom', 'empty folder', DicomSeriesError, 'empty')
def _empty_folder(tmp):
  (tmp / 'empty').mkdir()
  return lambda: dicom_io.read_dicom_series(tmp / 'empty')


@case('dicom', 'folder of text files', DicomSeriesError, 'texts')
def _text_folder(tmp):
  (tmp / 'texts').mkdir()
  (tmp / 'texts' / 'a.txt').write_text('hello')
  return lambda: dicom_io.read_dicom_series(tmp / 'texts')


@case('dicom', 'garbage named .dcm', DicomSeriesError, 'junk.dcm')
def _garbage_dcm(tmp):
  dicom_series(tmp)
  (tmp / 'series' / 'junk.dcm').write_bytes(b'\x00' * 500)
  return read_series(tmp)


@case('dicom', 'unknown series_uid', DicomSeriesError, '1.2.3.4.5')
def _unknown_uid(tmp):
  dicom_series(tmp)
  return lambda: dicom_io.read_dicom_series(tmp / 'series', '1.2.3.4.5')


@case(
    'dicom',
    'no position nor InstanceNumber',
    DicomSeriesError,
    'slice_0000.dcm',
)
def _no_order(tmp):
  paths = dicom_series(tmp)
  for p in paths:
    ds = pydicom.dcmread(p)
    del ds.ImagePositionPatient
    if p == paths[0]:
      del ds.InstanceNumber
    pydicom.dcmwrite(p, ds, enforce_file_format=True)
  return read_series(tmp)


# ----------------------------------------------------------------- inv3


def inv3(
    tmp: Path,
    voxels=None,
    main=None,
    files=None,
    omit=(),
    compress=True,
    name='project.inv3',
) -> Path:
  """A project laid out like InVesalius' (see tests/test_invesalius.py)."""
  voxels = (
      np.zeros((3, 4, 5), np.int16) if voxels is None else np.asarray(voxels)
  )
  plist = {
      'modality': 'CT',
      'orientation': 1,
      'spacing': [0.8, 0.8, 2.0],
      'matrix': {
          'dtype': voxels.dtype.name,
          'filename': 'matrix.dat',
          'shape': list(voxels.shape),
      },
      'masks': {},
  }
  plist.update(main or {})
  members = {
      'main.plist': plistlib.dumps(plist),
      'matrix.dat': voxels.tobytes(),
  }
  members.update(files or {})
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode='w') as tar:
    for member, data in sorted(members.items()):
      if member in omit:
        continue
      info = tarfile.TarInfo(f'tmpdir/{member}')
      info.size = len(data)
      tar.addfile(info, io.BytesIO(data))
  path = tmp / name
  raw = buf.getvalue()
  path.write_bytes(gzip.compress(raw) if compress else raw)
  return path


def inv3_case(name, error=Inv3Error, **kwargs):
  def build(tmp):
    path = inv3(tmp, **kwargs)
    return lambda: invesalius.read_inv3(path)

  case('inv3', name, error, 'project.inv3')(build)


def _matrix(**changes):
  m = {'dtype': 'int16', 'filename': 'matrix.dat', 'shape': [3, 4, 5]}
  m.update(changes)
  return {'matrix': m}


inv3_case('missing main.plist', omit=('main.plist',))
inv3_case('missing matrix.dat', omit=('matrix.dat',))
inv3_case('main.plist not a plist', files={'main.plist': b'<<nope'})
inv3_case(
    'main.plist holds a list', files={'main.plist': plistlib.dumps([1, 2])}
)
inv3_case('no matrix dict', main={'matrix': 'matrix.dat'})
inv3_case('shape of 2 entries', main=_matrix(shape=[3, 4]))
inv3_case('negative shape', main=_matrix(shape=[3, -4, 5]))
inv3_case('shape text', main=_matrix(shape='3x4x5'))
inv3_case('unknown dtype', main=_matrix(dtype='float13'))
inv3_case('complex dtype', main=_matrix(dtype='complex64'))
inv3_case('byte size mismatch', main=_matrix(shape=[3, 4, 6]))
inv3_case('negative spacing', main={'spacing': [0.8, -0.8, 2.0]})
inv3_case('spacing of 2', main={'spacing': [0.8, 2.0]})
inv3_case('spacing NaN', main={'spacing': [0.8, float('nan'), 2.0]})
inv3_case('coronal project', main={'orientation': 'CORONAL'})
inv3_case('MR project', main={'modality': 'MR'})
inv3_case('masks not a dict', main={'masks': [1]})
inv3_case('mask plist missing', main={'masks': {'0': 'mask_0.plist'}})
inv3_case(
    'mask without buffer voxels',
    main={'masks': {'0': 'mask_0.plist'}},
    files={
        'mask_0.plist': plistlib.dumps(
            {'mask_file': 'mask_0.dat', 'mask_shape': [3, 4, 5]}
        ),
        'mask_0.dat': bytes(60),
    },
)
inv3_case('NaN voxel', voxels=np.full((3, 4, 5), np.nan, np.float32))


@case('inv3', 'not an archive', Inv3Error, 'project.inv3')
def _not_archive(tmp):
  (tmp / 'project.inv3').write_bytes(b'plain text, not a project' * 20)
  return lambda: invesalius.read_inv3(tmp / 'project.inv3')


@case('inv3', 'truncated gzip', Inv3Error, 'project.inv3')
def _truncated_gzip(tmp):
  path = inv3(tmp, voxels=np.arange(600, dtype=np.int16).reshape(6, 10, 10))
  raw = path.read_bytes()
  path.write_bytes(raw[: len(raw) // 2])
  return lambda: invesalius.read_inv3(path)


@case('inv3', 'empty file', Inv3Error, 'project.inv3')
def _empty_inv3(tmp):
  (tmp / 'project.inv3').write_bytes(b'')
  return lambda: invesalius.read_inv3(tmp / 'project.inv3')


@case('inv3', 'no such file', FileNotFoundError, 'absent.inv3')
def _absent_inv3(tmp):
  return lambda: invesalius.read_inv3(tmp / 'absent.inv3')


@case('inv3', '12x1x1 volume through volume.source', VolumeError, 'thin.inv3')
def _thin(tmp):
  path = inv3(tmp, voxels=np.zeros((12, 1, 1), np.int16), name='thin.inv3')
  cfg = sources.default_config()
  cfg.source, cfg.path = 'inv3', str(path)
  return lambda: sources.load_volume(cfg)


# ----------------------------------------------------------------- polygons

GOOD = [[0.1, 0.1], [0.9, 0.1], [0.5, 0.9]]
NAME = 'my polygon 7'

BAD_POLYGONS = {
    'complex vertices': np.array(GOOD) + 0.5j,
    'boolean vertices': np.ones((3, 2), bool),
    'text': 'abc',
    'list of texts': [['a', 'b'], ['c', 'd'], ['e', 'f']],
    'ragged vertices': [[0.1, 0.1], [0.9], [0.5, 0.9]],
    'None vertex': [[0.1, 0.1], None, [0.5, 0.9]],
    'dict': {'x': 1},
    'scalar': 0.5,
    'empty list': [],
    '3-d array': np.zeros((2, 3, 2)),
    'three values per vertex': [[0.1, 0.1, 0.1]] * 3,
    'two vertices': GOOD[:2],
    'NaN vertex': [[0.1, 0.1], [np.nan, 0.4], [0.5, 0.9]],
    '+inf vertex': [[0.1, 0.1], [np.inf, 0.4], [0.5, 0.9]],
    '-inf vertex': [[0.1, 0.1], [0.9, -np.inf], [0.5, 0.9]],
    'outside the JH': [[0.1, 0.1], [1.3, 0.4], [0.5, 0.9]],
    'negative coordinate': [[-0.1, 0.1], [0.9, 0.1], [0.5, 0.9]],
    'collinear': [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]],
    'bow-tie': [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]],
    'repeated vertex': [[0.1, 0.1], [0.1, 0.1], [0.9, 0.1], [0.5, 0.9]],
    'edges folding back': [[0.1, 0.1], [0.9, 0.1], [0.5, 0.1], [0.5, 0.9]],
    'tiny area': [[0.1, 0.1], [0.9, 0.1], [0.9, 0.1002]],
}

for _name, _vertices in BAD_POLYGONS.items():
  case('polygon', f'validate_polygon: {_name}', PolygonError, NAME)(
      lambda tmp, v=_vertices: lambda: polygon_validation.validate_polygon(
          v, name=NAME
      )
  )

BAD_TF_POLYGONS = {
    'NaN vertex': [[0.1, 0.1], [np.nan, 0.4], [0.5, 0.9]],
    'inf vertex': [[0.1, 0.1], [0.9, np.inf], [0.5, 0.9]],
    'two vertices': GOOD[:2],
    'bow-tie': [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]],
    'collinear': [[0.1, 0.1], [0.5, 0.5], [0.9, 0.9]],
    'text': [['a', 'b'], ['c', 'd'], ['e', 'f']],
}

for _name, _vertices in BAD_TF_POLYGONS.items():
  case('polygon', f'tf_table: {_name}', PolygonError, 'tf_table polygons')(
      lambda tmp, v=_vertices: lambda: transfer_function.tf_table(
          np.asarray(v), 8
      )
  )
  case(
      'polygon',
      f'opacity_table: {_name}',
      PolygonError,
      'opacity_table vertices',
  )(
      lambda tmp, v=_vertices: lambda: transfer_function.opacity_table(
          np.asarray(v), 8
      )
  )


@case(
    'polygon',
    'tf_table: bow-tie in a batch',
    PolygonError,
    'tf_table polygons[1, 0]',
)
def _batch_bowtie(tmp):
  batch = np.array(
      [
          [GOOD + [[0.5, 0.9]]],
          [[[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]],
      ]
  )
  return lambda: transfer_function.tf_table(batch, 8)


# ----------------------------------------------------------------- actions


def actions_case(name, content, needle):
  def build(tmp):
    path = tmp / 'actions.json'
    if isinstance(content, bytes):
      path.write_bytes(content)
    else:
      path.write_text(content)
    return lambda: experts.load_expert_actions(str(path))

  case('actions', name, InputError, lambda tmp: f'actions.json{needle}')(build)


actions_case('not JSON', '[[0.1, 0.1], [0.9', '')
actions_case('not UTF-8', b'\xff\xfe[1]', '')
actions_case('empty list', '[]', '')
actions_case('a dict', '{"polygons": []}', '')
actions_case(
    'strings as vertices',
    '[[["a", "b"], ["c", "d"], ["e", "f"]]]',
    ': polygon 0',
)
actions_case(
    'ragged vertices', '[[[0.1, 0.1], [0.9], [0.5, 0.9]]]', ': polygon 0'
)
actions_case('a string polygon', '["abc"]', ': polygon 0')
actions_case(
    'bow-tie second polygon',
    json.dumps(
        [GOOD + [[0.5, 0.95]], [[0.1, 0.1], [0.9, 0.9], [0.9, 0.1], [0.1, 0.9]]]
    ),
    ': polygon 1',
)
actions_case(
    'mixed vertex counts',
    json.dumps([GOOD, [[0.1, 0.1], [0.9, 0.1], [0.9, 0.9], [0.1, 0.9]]]),
    '',
)
actions_case('deep nesting', '[' * 100000 + ']' * 100000, '')


@case('actions', 'no such actions file', FileNotFoundError, 'missing.json')
def _absent_actions(tmp):
  return lambda: experts.load_expert_actions(str(tmp / 'missing.json'))


# ----------------------------------------------------------------- configs


def render_case(key, value):
  def build(tmp):
    cfg = scenes.default_config()
    cfg[key] = value
    return lambda: scenes.check_render_config(cfg)

  case('config', f'render.{key}={value!r}', ConfigError, f'render.{key}')(build)


for _key, _value in (
    ('step_mm', -1.0),
    ('step_mm', float('nan')),
    ('image_size', 0),
    ('image_size', 100000),
    ('tau', 0.0),
    ('tau', -0.1),
    ('alpha_max', 2.0),
    ('alpha_max', 0.0),
    ('zoom', -1.0),
    ('zoom', 0.0),
    ('elevation', 100.0),
    ('azimuth', float('inf')),
):
  render_case(_key, _value)


def histogram_case(name, needle, **kwargs):
  def build(tmp):
    volume = make_volume(np.zeros((4, 4, 4), np.float32), (1, 1, 1))
    return lambda: histogram.joint_histogram(volume, **kwargs)

  case('config', name, ConfigError, needle)(build)


histogram_case('histogram.bins=1', 'histogram.bins', bins=1)
histogram_case('histogram.bins=2.5', 'histogram.bins', bins=2.5)
histogram_case('histogram.bins=True', 'histogram.bins', bins=True)
histogram_case(
    'histogram.grad_percentile=0',
    'histogram.grad_percentile',
    grad_percentile=0.0,
)
histogram_case(
    'histogram.grad_percentile=101',
    'histogram.grad_percentile',
    grad_percentile=101.0,
)
histogram_case(
    'histogram.hu_window reversed',
    'histogram.hu_window',
    hu_window=(3000.0, -1000.0),
)
histogram_case(
    'histogram.hu_window NaN',
    'histogram.hu_window',
    hu_window=(float('nan'), 1.0),
)
histogram_case(
    'histogram.hu_window text', 'histogram.hu_window', hu_window=('low', 'high')
)


def volume_case(name, needle, error=ConfigError, **fields):
  def build(tmp):
    cfg = sources.default_config()
    cfg.update(fields)
    return lambda: sources.load_volume(cfg)

  case('config', name, error, needle)(build)


volume_case('volume.source unknown', 'volume.source', source='pacs')
volume_case('volume.source=dicom without path', 'volume.path', source='dicom')
volume_case('volume.source=inv3 without path', 'volume.path', source='inv3')
volume_case(
    'volume.path to a missing folder',
    '/no/such/dicom/folder',
    error=DicomSeriesError,
    source='dicom',
    path='/no/such/dicom/folder',
)
volume_case('volume.shape of 2 axes', 'volume.shape', shape=(4, 4))
volume_case('volume.shape 12x1x1', 'volume.shape', shape=(12, 1, 1))
volume_case('volume.spacing negative', 'volume.spacing', spacing=-1.0)


def scenes_case(entry, needle):
  def build(tmp):
    config = dataset.default_config()
    config.scenes = entry
    return lambda: dataset.scene_specs(config)

  case('config', f'scenes={entry!r}', ConfigError, needle)(build)


scenes_case('nonsense:3', "scenes: bad entry 'nonsense:3'")
scenes_case('phantom:a-b', "scenes: bad phantom seeds 'a-b'")
scenes_case('phantom:1,phantom:1', 'scenes: scene(s) listed twice')


# ----------------------------------------------------------------- votes


def vote_store(tmp: Path) -> store_lib.PreferenceStore:
  s = store_lib.PreferenceStore(tmp / 'votes.sqlite')
  s.add_scene('s0')
  s.add_actions('s0', [GOOD, [[0.2, 0.2], [0.8, 0.2], [0.5, 0.8]]], 'random')
  s.add_pairs('s0', [(0, 1)])
  return s


def vote_case(name, needle, **changes):
  def build(tmp):
    s = vote_store(tmp)
    vote = dict(
        scene_id='s0',
        pair_id=0,
        left_action=0,
        right_action=1,
        choice='left',
        inspector='inspector-1',
    )
    vote.update(changes)
    return lambda: s.record_vote(**vote)

  case('vote', name, VoteError, needle)(build)


vote_case('choice "both"', 'choice', choice='both')
vote_case('choice None', 'choice', choice=None)
vote_case('empty inspector', 'inspector', inspector='  ')
vote_case('inspector a number', 'inspector', inspector=7)
vote_case('unknown scene', "'nope'", scene_id='nope')
vote_case('unknown pair', 'pair 5', pair_id=5)
vote_case('pair id a bool', 'pair_id', pair_id=True)
vote_case('pair id text', 'pair_id', pair_id='0')
vote_case(
    'actions not the pair', 'do not match pair 0', left_action=1, right_action=1
)
vote_case('source "robot"', 'source', source='robot')
vote_case('shown_at NaN', 'shown_at', shown_at=float('nan'))
vote_case('shown_at text', 'shown_at', shown_at='noon')
vote_case('view azimuth NaN', 'view_azimuth', view_azimuth=float('nan'))
vote_case('view azimuth text', 'view_azimuth', view_azimuth='left')
vote_case('render key blank', 'render_key', render_key=' ')


@case('vote', 'undo with nothing to undo', VoteError, "'inspector-1'")
def _empty_undo(tmp):
  s = vote_store(tmp)
  return lambda: s.record_undo('inspector-1')


@case(
    'vote',
    'store file that is not SQLite',
    store_lib.SchemaError,
    'notes.sqlite',
)
def _not_sqlite(tmp):
  (tmp / 'notes.sqlite').write_text('not a database, ' * 100)
  return lambda: store_lib.PreferenceStore(tmp / 'notes.sqlite')


def kinds() -> dict:
  out: dict = {}
  for c in CASES:
    out[c.kind] = out.get(c.kind, 0) + 1
  return out
