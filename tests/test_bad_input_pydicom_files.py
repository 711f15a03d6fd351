"""The DICOM reader over every file bundled with pydicom's test data (only
the bundled ones: pydicom.data.get_testdata_files never downloads): each one
loads as a Volume or gives a DicomSeriesError naming it -- no other error,
no silent non-CT volume."""

import collections
import warnings

from matplotlib.figure import Figure
import numpy as np
import pydicom.data
import pytest

from rlhf_tf.data.dicom_frames import DicomSeriesError
from rlhf_tf.data.dicom_io import read_dicom_series
from rlhf_tf.evaluation import figures_style
from rlhf_tf.render import histogram


def test_every_bundled_pydicom_file_loads_or_is_refused_by_name(capsys):
  paths = sorted(pydicom.data.get_testdata_files())
  assert len(paths) > 100
  outcome = collections.Counter()
  for path in paths:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      try:
        volume = read_dicom_series(path)
      except DicomSeriesError as err:
        assert path in str(err), (path, str(err))
        outcome['refused'] += 1
        continue
    assert volume.modality == 'CT', path  # non-CT is refused by default
    assert np.isfinite(volume.hu).all() and min(volume.shape) >= 1, path
    outcome['loaded'] += 1
  with capsys.disabled():
    print(
        f'\npydicom bundled test files: {len(paths)}, loaded '
        f'{outcome["loaded"]}, refused with a DicomSeriesError naming the '
        f'file {outcome["refused"]}'
    )
  assert outcome['loaded'] + outcome['refused'] == len(paths)
  assert outcome['loaded'] >= 10  # the CT files among them do load


@pytest.mark.parametrize('name', ['MR_small.dcm', 'rtdose.dcm'])
def test_non_ct_loads_only_when_allowed(name):
  path = pydicom.data.get_testdata_file(name)
  with pytest.raises(DicomSeriesError, match='not CT'):
    read_dicom_series(path)
  with pytest.warns(UserWarning, match='not Hounsfield units'):
    volume = read_dicom_series(path, allow_non_ct=True)
  assert volume.modality in ('MR', 'RTDOSE')
  if name == 'rtdose.dcm':  # 15 frames 5 mm apart (GridFrameOffsetVector)
    assert volume.shape == (15, 10, 10)
    np.testing.assert_allclose(volume.spacing, [5.0, 10.0, 10.0])
  # Figures never call its values HU.
  jh = histogram.joint_histogram(volume, bins=8)
  assert jh.axes.unit == f'{volume.modality} value'
  ax = Figure().add_subplot()
  figures_style.draw_jh_image(ax, jh)
  assert 'HU' not in ax.get_xlabel() + ax.get_ylabel()
  assert volume.modality in ax.get_xlabel()
