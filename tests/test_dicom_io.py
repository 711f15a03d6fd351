"""DICOM reader/writer: round trips, sorting, rescale and every bad input."""

import shutil
import warnings

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.sequence import Sequence
from pydicom.uid import (
    CTImageStorage,
    EnhancedCTImageStorage,
    ExplicitVRLittleEndian,
    generate_uid,
    JPEG2000Lossless,
    JPEGLSLossless,
)
import pytest

from rlhf_tf.data.dicom_frames import DicomSeriesError
from rlhf_tf.data.dicom_io import read_dicom_series
from rlhf_tf.data.dicom_write import choose_pixel_encoding, write_dicom_series
from rlhf_tf.data.volume import AXIAL, make_volume

SHAPE = (8, 9, 10)
# Row (0.8, 0.6, 0), column (0, 0, -1): normal (-0.6, 0.8, 0), a double
# oblique stack whose slice order differs from any patient axis.
OBLIQUE = (0.8, 0.6, 0.0, 0.0, 0.0, -1.0)


def _volume(orientation=AXIAL, seed=0, shape=SHAPE, name='phantom'):
  rng = np.random.default_rng(seed)
  hu = rng.integers(-1024, 3072, shape).astype(np.float32)
  return make_volume(
      hu,
      spacing=(2.5, 0.75, 0.5),
      origin=(-12.5, 30.0, 7.25),
      orientation=orientation,
      name=name,
  )


def _edit(path, change):
  ds = pydicom.dcmread(path)
  change(ds)
  pydicom.dcmwrite(path, ds, enforce_file_format=True)


def _series(tmp_path, **kwargs):
  volume = _volume(**kwargs)
  return volume, write_dicom_series(volume, tmp_path / 'series')


@pytest.mark.parametrize('orientation', [AXIAL, OBLIQUE])
def test_round_trip_is_bitwise_with_geometry(tmp_path, orientation):
  volume, paths = _series(tmp_path, orientation=orientation)
  assert [p.name for p in paths[:2]] == ['slice_0000.dcm', 'slice_0001.dcm']
  back = read_dicom_series(tmp_path / 'series')
  assert back.hu.dtype == np.float32
  assert np.array_equal(back.hu.view(np.int32), volume.hu.view(np.int32))
  np.testing.assert_allclose(back.spacing, volume.spacing, rtol=1e-9)
  np.testing.assert_allclose(back.origin, volume.origin, atol=1e-9)
  np.testing.assert_allclose(back.orientation, orientation, atol=1e-12)
  assert back.name == 'phantom' and back.modality == 'CT'


def test_written_files_are_valid_ct_storage(tmp_path):
  _, paths = _series(tmp_path)
  raw = paths[0].read_bytes()
  assert raw[128:132] == b'DICM'
  ds = pydicom.dcmread(paths[3], force=False)
  assert ds.SOPClassUID == CTImageStorage
  assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
  assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
  assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
  assert (ds.Modality, ds.PhotometricInterpretation) == ('CT', 'MONOCHROME2')
  assert (ds.BitsAllocated, ds.PixelRepresentation) == (16, 1)
  assert (ds.Rows, ds.Columns, ds.InstanceNumber) == (9, 10, 4)
  assert float(ds.RescaleSlope) == 1 and float(ds.RescaleIntercept) == 0
  assert float(ds.SliceThickness) == float(ds.SpacingBetweenSlices) == 2.5
  assert [float(p) for p in ds.ImagePositionPatient] == [-12.5, 30.0, 14.75]
  assert ds.SeriesDescription == 'phantom'
  assert str(ds.PatientName) == 'rlhf_tf^phantom'
  assert 'WindowCenter' in ds and 'WindowWidth' in ds
  uids = {pydicom.dcmread(p).SOPInstanceUID for p in paths}
  assert len(uids) == len(paths)


def test_uid_seed_makes_uids_deterministic(tmp_path):
  volume = _volume()
  a = write_dicom_series(volume, tmp_path / 'a', uid_seed=7)
  b = write_dicom_series(volume, tmp_path / 'b', uid_seed=7)
  c = write_dicom_series(volume, tmp_path / 'c')
  read = lambda p: pydicom.dcmread(p)
  for key in ('StudyInstanceUID', 'SeriesInstanceUID', 'SOPInstanceUID'):
    assert read(a[2])[key].value == read(b[2])[key].value
    assert read(a[2])[key].value != read(c[2])[key].value


def test_pixel_encoding_rule():
  ints = np.array([[-1024, 0, 3071]], np.float32)
  assert choose_pixel_encoding(ints) == (
      choose_pixel_encoding(ints).__class__(1.0, 0.0, 16, True)
  )
  quarter = choose_pixel_encoding(ints / 4)
  assert (quarter.slope, quarter.bits, quarter.exact) == (0.25, 16, True)
  shifted = choose_pixel_encoding(ints + 60000)  # outside int16, span fits
  assert (shifted.slope, shifted.bits, shifted.exact) == (1.0, 16, True)
  wide = choose_pixel_encoding(np.array([-40000, 40000], np.float32))
  assert (wide.bits, wide.exact) == (32, True)
  noise = choose_pixel_encoding(np.array([0.1, -1000.3], np.float32))
  assert (noise.bits, noise.exact, noise.slope) == (32, False, 2.0**-15)
  narrow = choose_pixel_encoding(
      np.array([0.1, -1000.3], np.float32), allow_32bit=False
  )
  assert (narrow.bits, narrow.exact) == (16, False)


def test_non_integer_hu_round_trip(tmp_path):
  rng = np.random.default_rng(1)
  dyadic = rng.integers(-8000, 8000, SHAPE).astype(np.float32) / 8
  noise = rng.normal(0, 500, SHAPE).astype(np.float32)
  for label, hu in (('dyadic', dyadic), ('noise', noise)):
    volume = make_volume(hu, (1.0, 1.0, 1.0), name=label)
    write_dicom_series(volume, tmp_path / label)
    back = read_dicom_series(tmp_path / label).hu
    if label == 'dyadic':
      assert np.array_equal(back, hu)
    else:
      np.testing.assert_allclose(back, hu, rtol=0, atol=2.0**-16)


def test_shuffled_names_and_list_order_sort_by_position(tmp_path):
  volume, paths = _series(tmp_path, orientation=OBLIQUE)
  rng = np.random.default_rng(3)
  renamed = []
  for path, new in zip(paths, rng.permutation(len(paths))):
    renamed.append(path.rename(path.with_name(f'img{new:02d}_tmp')))
  renamed = [p.rename(p.with_name(p.name[:-4] + '.dcm')) for p in renamed]
  back = read_dicom_series(tmp_path / 'series')
  assert np.array_equal(back.hu, volume.hu)
  shuffled = [renamed[i] for i in rng.permutation(len(renamed))]
  assert np.array_equal(read_dicom_series(shuffled).hu, volume.hu)


def test_instance_number_fallback(tmp_path):
  volume, paths = _series(tmp_path)
  for path in paths:
    _edit(path, lambda ds: delattr(ds, 'ImagePositionPatient'))
  shuffled = [paths[i] for i in (5, 0, 7, 2, 1, 6, 4, 3)]
  with pytest.warns(UserWarning, match='InstanceNumber'):
    back = read_dicom_series(shuffled)
  assert np.array_equal(back.hu, volume.hu)
  assert back.spacing[0] == 2.5  # from SpacingBetweenSlices


def _hand_ct(path, stored, z, slope='2', intercept='-1024', series='1.2.3.4'):
  """A minimal CT file built field by field, independent of the writer."""
  ds = Dataset()
  ds.file_meta = FileMetaDataset()
  ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
  ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
  ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds.SOPClassUID = CTImageStorage
  ds.SeriesInstanceUID, ds.Modality = series, 'CT'
  ds.ImagePositionPatient = ['0', '0', str(z)]
  ds.ImageOrientationPatient = ['1', '0', '0', '0', '1', '0']
  ds.PixelSpacing = ['0.5', '0.5']
  ds.Rows, ds.Columns = stored.shape
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
  ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
  ds.PixelRepresentation = 1
  ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
  ds.PixelData = stored.astype('<i2').tobytes()
  pydicom.dcmwrite(path, ds, enforce_file_format=True)


def test_rescale_slope_and_intercept_applied(tmp_path):
  stored = np.arange(3 * 4 * 5).reshape(3, 4, 5).astype(np.int16) * 7 - 100
  for z in (2, 0, 1):
    _hand_ct(tmp_path / f'{z}.dcm', stored[z], z * 3.0)
  back = read_dicom_series(tmp_path)
  assert np.array_equal(back.hu, stored * 2.0 - 1024.0)
  np.testing.assert_allclose(back.spacing, (3.0, 0.5, 0.5))


def test_non_dicom_file_is_skipped_with_warning(tmp_path):
  volume, _ = _series(tmp_path)
  (tmp_path / 'series' / 'notes.txt').write_text('not a DICOM file')
  with pytest.warns(UserWarning, match='notes.txt'):
    back = read_dicom_series(tmp_path / 'series')
  assert np.array_equal(back.hu, volume.hu)


def _set_rows(ds):
  ds.Rows = 8
  ds.PixelData = ds.PixelData[: 8 * 10 * 2]


def _compress_as(ds, syntax):
  """Relabels the slice as compressed; its bytes are no valid codestream."""
  ds.file_meta.TransferSyntaxUID = syntax
  ds.PixelData = encapsulate([ds.PixelData])
  ds['PixelData'].VR = 'OB'


def _retag(ds):
  _compress_as(ds, JPEG2000Lossless)


@pytest.mark.parametrize(
    'change, message',
    [
        (lambda ds: delattr(ds, 'PixelData'), 'missing PixelData'),
        (_set_rows, 'inconsistent Rows'),
        (
            lambda ds: setattr(ds, 'PixelSpacing', ['0.75', '0.6']),
            'inconsistent PixelSpacing',
        ),
        (
            lambda ds: setattr(
                ds,
                'ImageOrientationPatient',
                ['1', '0', '0', '0', '0.8', '0.6'],
            ),
            'inconsistent orientation',
        ),
        (_retag, r'JPEG 2000.*1\.2\.840\.10008\.1\.2\.4\.90'),
    ],
)
def test_bad_slice_raises_naming_file_and_problem(tmp_path, change, message):
  _, paths = _series(tmp_path)
  _edit(paths[5], change)
  with pytest.raises(DicomSeriesError, match=message) as info:
    read_dicom_series(tmp_path / 'series')
  assert 'slice_0005.dcm' in str(info.value)


def test_undecodable_compression_says_what_to_install(tmp_path):
  _, paths = _series(tmp_path)
  _edit(paths[2], lambda ds: _compress_as(ds, JPEGLSLossless))
  with pytest.raises(DicomSeriesError, match='JPEG-LS') as info:
    read_dicom_series(tmp_path / 'series')
  assert 'slice_0002.dcm' in str(info.value)
  if not get_decoder(JPEGLSLossless).is_available:
    assert 'install' in str(info.value)


def test_missing_slice_raises(tmp_path):
  _, paths = _series(tmp_path)
  paths[4].unlink()
  with pytest.raises(DicomSeriesError, match='missing slice.*slice_0003'):
    read_dicom_series(tmp_path / 'series')


def test_duplicated_slice_raises(tmp_path):
  _, paths = _series(tmp_path)
  copy = tmp_path / 'series' / 'copy.dcm'
  shutil.copy(paths[3], copy)
  _edit(copy, lambda ds: setattr(ds, 'SOPInstanceUID', generate_uid()))
  with pytest.raises(DicomSeriesError, match='duplicated slice'):
    read_dicom_series(tmp_path / 'series')


def test_two_series_listed_and_one_chosen(tmp_path):
  first = _volume(name='first')
  second = _volume(seed=1, shape=(3, 9, 10), name='second')
  write_dicom_series(first, tmp_path / 'a')
  write_dicom_series(second, tmp_path / 'b')
  with pytest.raises(DicomSeriesError, match='2 series') as info:
    read_dicom_series(tmp_path)
  uid = pydicom.dcmread(tmp_path / 'b' / 'slice_0000.dcm').SeriesInstanceUID
  assert uid in str(info.value) and "'first'" in str(info.value)
  assert '3 file(s)' in str(info.value)
  back = read_dicom_series(tmp_path, series_uid=uid)
  assert np.array_equal(back.hu, second.hu) and back.name == 'second'
  with pytest.raises(DicomSeriesError, match='not found'):
    read_dicom_series(tmp_path, series_uid='1.2.3')


def test_empty_and_non_dicom_inputs_raise(tmp_path):
  with pytest.raises(DicomSeriesError, match='empty'):
    read_dicom_series(tmp_path)
  (tmp_path / 'readme.txt').write_text('hello')
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    with pytest.raises(DicomSeriesError, match='no DICOM image files'):
      read_dicom_series(tmp_path)
  with pytest.raises(DicomSeriesError, match='no such file'):
    read_dicom_series(tmp_path / 'absent')


def _functional_groups(**items):
  groups = Dataset()
  for sequence, values in items.items():
    item = Dataset()
    for keyword, value in values.items():
      setattr(item, keyword, value)
    setattr(groups, sequence, Sequence([item]))
  return groups


def test_multi_frame_enhanced_ct(tmp_path):
  rng = np.random.default_rng(4)
  stored = rng.integers(0, 4000, (4, 6, 7)).astype(np.int16)
  z_of_frame = [6.0, 0.0, 9.0, 3.0]  # stored out of order on purpose
  ds = Dataset()
  ds.file_meta = FileMetaDataset()
  ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
  ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
  ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds.SOPClassUID = EnhancedCTImageStorage
  ds.SeriesInstanceUID, ds.Modality = generate_uid(), 'CT'
  ds.SeriesDescription = 'enhanced'
  ds.NumberOfFrames, (ds.Rows, ds.Columns) = 4, stored.shape[1:]
  ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, 'MONOCHROME2'
  ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
  ds.PixelRepresentation = 1
  ds.SharedFunctionalGroupsSequence = Sequence(
      [
          _functional_groups(
              PixelMeasuresSequence={
                  'PixelSpacing': ['0.4', '0.6'],
                  'SliceThickness': '3',
              },
              PlaneOrientationSequence={
                  'ImageOrientationPatient': ['1', '0', '0', '0', '1', '0']
              },
              PixelValueTransformationSequence={
                  'RescaleSlope': '1',
                  'RescaleIntercept': '-1024',
              },
          )
      ]
  )
  ds.PerFrameFunctionalGroupsSequence = Sequence(
      [
          _functional_groups(
              PlanePositionSequence={
                  'ImagePositionPatient': ['5', '-5', str(z)]
              }
          )
          for z in z_of_frame
      ]
  )
  ds.PixelData = stored.astype('<i2').tobytes()
  pydicom.dcmwrite(tmp_path / 'enhanced.dcm', ds, enforce_file_format=True)
  back = read_dicom_series(tmp_path / 'enhanced.dcm')
  order = np.argsort(z_of_frame)
  assert np.array_equal(back.hu, stored[order] - 1024.0)
  np.testing.assert_allclose(back.spacing, (3.0, 0.4, 0.6))
  np.testing.assert_allclose(back.origin, (5.0, -5.0, 0.0))
  assert back.name == 'enhanced'


def test_writer_refuses_non_empty_directory(tmp_path):
  target = tmp_path / 'out'
  target.mkdir()
  (target / 'keep.txt').write_text('precious')
  with pytest.raises(FileExistsError, match='not empty'):
    write_dicom_series(_volume(), target)
  assert not list(target.glob('*.dcm'))
  write_dicom_series(_volume(), target, overwrite=True)
  small = _volume(seed=2, shape=(3, 9, 10))
  write_dicom_series(small, target, overwrite=True)  # stale slices removed
  assert (target / 'keep.txt').read_text() == 'precious'
  with pytest.warns(UserWarning, match='keep.txt'):
    assert np.array_equal(read_dicom_series(target).hu, small.hu)


def test_series_without_pixels_is_ignored_when_one_image_series(tmp_path):
  volume, paths = _series(tmp_path)
  report = tmp_path / 'series' / 'report.dcm'
  shutil.copy(paths[0], report)

  def as_report(ds):
    del ds.PixelData
    ds.SeriesInstanceUID, ds.Modality = generate_uid(), 'SR'

  _edit(report, as_report)
  with pytest.warns(UserWarning, match='without pixel data'):
    back = read_dicom_series(tmp_path / 'series', name='custom')
  assert np.array_equal(back.hu, volume.hu) and back.name == 'custom'
