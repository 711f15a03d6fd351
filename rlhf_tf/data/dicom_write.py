"""Writing a Volume as a DICOM CT Image Storage series (one file per slice).

Files are explicit VR little endian with a proper file meta header, one per Z
slice, named ``slice_0000.dcm`` ...; ``rlhf_tf.data.dicom_io`` reads them back.

Pixel encoding rule (``choose_pixel_encoding``), stored = (HU - intercept) /
slope, HU = stored x slope + intercept:

1. slope = 2^-k for the smallest k in 0..15 that makes every HU x 2^k an
   integer (k = 0 for integer HU); the intercept is an integer, 0 when the
   values fit without one, else the middle of the HU range.
2. int16 (BitsAllocated 16, the CT Image IOD's only value) when the stored
   values fit; else int32 (BitsAllocated 32, readable by pydicom and most
   toolkits but outside the strict CT IOD) when ``allow_32bit``.
3. Both cases are bitwise exact: slope, intercept and stored values are exact
   binary numbers, a float64 reader gets exactly the float32 HU. Integer HU in
   int16 range thus round-trip with slope 1, intercept 0, int16.
4. HU that no k <= 15 makes integer (arbitrary float32 noise) are rounded to
   the finest grid 2^-k that fits int32 (16-bit when ``allow_32bit=False``):
   for a CT range of a few thousand HU k = 15, error <= 2^-16 HU (1.5e-5 HU),
   which is below float32 resolution for |HU| >= 256.
k stops at 15 because DICOM DS strings hold 16 characters: 2^-15 is
'3.0517578125e-05' exactly, 2^-16 no longer fits.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path
import re
from typing import Optional, Union

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from rlhf_tf.data.dicom_frames import slice_normal
from rlhf_tf.data.volume import Volume

_MAX_K = 15  # 2 ** -15 is the finest power of two an exact DS string holds
_SLICE_NAME = re.compile(r'slice_\d{4,}\.dcm')


@dataclasses.dataclass(frozen=True)
class PixelEncoding:
  """How HU become stored integers: HU = stored * slope + intercept."""

  slope: float  # a power of two, 2 ** -k
  intercept: float  # an integer
  bits: int  # 16 or 32, signed
  exact: bool  # True when the float32 HU round-trip bitwise

  def encode(self, hu: np.ndarray) -> np.ndarray:
    """Stored integers of ``hu`` (any shape); rounds only when not exact."""
    stored = np.rint((np.asarray(hu, np.float64) - self.intercept) / self.slope)
    return stored.astype(np.int16 if self.bits == 16 else np.int32)


def _fits(lo: float, hi: float, scale: float, intercept: float, bits: int):
  limit = 2.0 ** (bits - 1)
  return (lo - intercept) * scale >= -limit and (
      hi - intercept
  ) * scale <= limit - 1


def _intercept_for(lo: float, hi: float, scale: float, bits: int):
  """0 when possible (the common, readable case), else the range middle."""
  if _fits(lo, hi, scale, 0.0, bits):
    return 0.0
  middle = float(np.floor((lo + hi) / 2))
  return middle if _fits(lo, hi, scale, middle, bits) else None


def _fraction_bits(hu: np.ndarray) -> Optional[int]:
  """Smallest k <= 15 making every HU x 2^k an integer, None if there is none.

  Works slice by slice so that a 547^3-sized volume needs no float64 copy;
  scaling a float32 by a power of two is exact, so the test is exact too.
  """
  k = 0
  for plane in hu:
    while k <= _MAX_K:
      scaled = plane * np.float32(2.0**k)
      if np.array_equal(scaled, np.rint(scaled)):
        break
      k += 1
    else:
      return None
  return k


def choose_pixel_encoding(hu, allow_32bit: bool = True) -> PixelEncoding:
  """The slope/intercept/bit depth of the module docstring's rule.

  Raises:
    ValueError: for non-finite HU, or a range too wide even for int32.
  """
  hu = np.asarray(hu, np.float32)
  if hu.ndim < 2:
    hu = hu.reshape(1, -1)
  if not np.all(np.isfinite(hu)):
    raise ValueError('cannot encode non-finite (NaN/inf) HU values')
  lo, hi = float(hu.min()), float(hu.max())
  widths = (16, 32) if allow_32bit else (16,)
  k = _fraction_bits(hu)
  if k is not None:
    for bits in widths:
      intercept = _intercept_for(lo, hi, 2.0**k, bits)
      if intercept is not None:
        return PixelEncoding(2.0**-k, intercept, bits, True)
  # Not exactly representable: the finest grid that fits the widest type.
  bits = widths[-1]
  for k in range(_MAX_K, -1, -1):
    intercept = _intercept_for(lo, hi, 2.0**k, bits)
    if intercept is not None:
      return PixelEncoding(2.0**-k, intercept, bits, False)
  raise ValueError(
      f'HU range [{lo}, {hi}] is too wide to store in {bits}-bit ' f'integers'
  )


def _ds(value: float) -> str:
  """A DS string; exact (repr) when it fits 16 characters."""
  text = repr(float(value))
  if text.endswith('.0'):
    text = text[:-2]
  return text if len(text) <= 16 else format_number_as_ds(float(value))


def _uid(seed, role: str):
  if seed is None:
    return generate_uid()
  return generate_uid(entropy_srcs=['rlhf_tf', str(seed), role])


def _prepare_directory(directory: Path, overwrite: bool) -> None:
  """Refuses to mix with existing files unless ``overwrite``; then removes
  only earlier ``slice_*.dcm`` files, so a shorter series leaves no stale
  slices behind. Other files are never deleted."""
  if directory.exists() and not directory.is_dir():
    raise FileExistsError(f'{directory}: exists and is not a directory')
  if directory.exists():
    existing = list(directory.iterdir())
    if existing and not overwrite:
      raise FileExistsError(
          f'{directory}: directory is not empty ({len(existing)} entries); '
          f'pass overwrite=True to replace its slice_*.dcm files'
      )
    for path in existing:
      if path.is_file() and _SLICE_NAME.fullmatch(path.name):
        path.unlink()
  directory.mkdir(parents=True, exist_ok=True)


def _base_dataset(
    volume: Volume,
    encoding: PixelEncoding,
    uids: dict,
    description: str,
    patient_name: str,
    patient_id: str,
) -> Dataset:
  """Everything the slices share; per-slice fields are set by the caller."""
  now = datetime.datetime.now()
  hu = np.asarray(volume.hu)
  lo, hi = float(hu.min()), float(hu.max())
  spacing = [float(s) for s in np.asarray(volume.spacing, np.float64)]
  ds = Dataset()
  ds.SpecificCharacterSet = 'ISO_IR 192'
  ds.ImageType = ['DERIVED', 'SECONDARY', 'AXIAL']
  ds.SOPClassUID = CTImageStorage
  ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime('%Y%m%d')
  ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime('%H%M%S')
  ds.AccessionNumber = ''
  ds.Modality = 'CT'
  ds.Manufacturer = 'rlhf_tf'
  ds.ReferringPhysicianName = ''
  ds.StudyDescription = 'rlhf_tf'
  ds.SeriesDescription = description
  ds.PatientName = patient_name
  ds.PatientID = patient_id
  ds.PatientBirthDate = ''
  ds.PatientSex = ''
  ds.KVP = ''
  ds.SliceThickness = _ds(spacing[0])
  ds.SpacingBetweenSlices = _ds(spacing[0])
  ds.StudyInstanceUID = uids['study']
  ds.SeriesInstanceUID = uids['series']
  ds.StudyID = '1'
  ds.SeriesNumber = 1
  ds.AcquisitionNumber = 1
  ds.ImageOrientationPatient = [_ds(c) for c in volume.orientation]
  ds.FrameOfReferenceUID = uids['frame']
  ds.PositionReferenceIndicator = ''
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = 'MONOCHROME2'
  ds.Rows, ds.Columns = int(hu.shape[1]), int(hu.shape[2])
  ds.PixelSpacing = [_ds(spacing[1]), _ds(spacing[2])]
  ds.BitsAllocated = ds.BitsStored = encoding.bits
  ds.HighBit = encoding.bits - 1
  ds.PixelRepresentation = 1
  ds.WindowCenter = _ds(round((lo + hi) / 2, 3))
  ds.WindowWidth = _ds(round(max(hi - lo, 1.0), 3))
  ds.RescaleIntercept = _ds(encoding.intercept)
  ds.RescaleSlope = _ds(encoding.slope)
  ds.RescaleType = 'HU'
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = CTImageStorage
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds.file_meta = meta
  return ds


def write_dicom_series(
    volume: Volume,
    directory: Union[str, os.PathLike],
    series_description: Optional[str] = None,
    patient_name: str = 'rlhf_tf^phantom',
    patient_id: str = 'RLHF_TF',
    uid_seed: Optional[Union[int, str]] = None,
    allow_32bit: bool = True,
    overwrite: bool = False,
) -> list[Path]:
  """Writes ``volume`` as CT Image Storage files ``slice_0000.dcm`` ...

  Args:
    volume: the Volume; its name is the default SeriesDescription.
    directory: created if needed; must be empty unless ``overwrite``.
    series_description: SeriesDescription, default ``volume.name``.
    patient_name, patient_id: PatientName / PatientID.
    uid_seed: when given, study/series/frame-of-reference/SOP instance UIDs
      are derived from it deterministically; otherwise they are random.
    allow_32bit: permit 32-bit pixels when 16 bits cannot hold the HU
      exactly (see the module docstring for the rule).
    overwrite: permit a non-empty directory; its old ``slice_*.dcm`` files
      are removed, other files are kept.

  Returns:
    The written paths in slice (Z) order.

  Raises:
    FileExistsError: non-empty directory without ``overwrite``.
    ValueError: non-finite HU or a non-orthonormal orientation.
  """
  directory = Path(directory)
  hu = np.asarray(volume.hu, np.float32)
  if hu.ndim != 3:
    raise ValueError(
        f'volume {volume.name!r}: HU must be [Z, Y, X], got '
        f'shape {hu.shape}'
    )
  encoding = choose_pixel_encoding(hu, allow_32bit=allow_32bit)
  normal = slice_normal(volume.orientation)
  _prepare_directory(directory, overwrite)
  uids = {role: _uid(uid_seed, role) for role in ('study', 'series', 'frame')}
  ds = _base_dataset(
      volume,
      encoding,
      uids,
      series_description or volume.name,
      patient_name,
      patient_id,
  )
  origin = np.asarray(volume.origin, np.float64)
  slice_spacing = float(np.asarray(volume.spacing, np.float64)[0])
  paths = []
  for z in range(hu.shape[0]):
    position = origin + z * slice_spacing * normal
    sop_uid = (
        _uid(uid_seed, f'sop-{z}') if uid_seed is not None else (generate_uid())
    )
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.InstanceNumber = z + 1
    ds.ImagePositionPatient = [_ds(p) for p in position]
    ds.SliceLocation = _ds(float(position @ normal))
    ds.PixelData = (
        encoding.encode(hu[z])
        .astype('<i2' if encoding.bits == 16 else '<i4')
        .tobytes()
    )
    path = directory / f'slice_{z:04d}.dcm'
    pydicom.dcmwrite(path, ds, enforce_file_format=True)
    paths.append(path)
  return paths
