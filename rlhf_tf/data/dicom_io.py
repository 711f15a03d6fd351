"""Reading CT volumes from DICOM: a series of slices or one multi-frame file.

``read_dicom_series`` turns a directory (searched recursively) or a list of
files into a ``Volume`` (see ``rlhf_tf.data.volume`` for the conventions):

- Files are grouped by SeriesInstanceUID; several series need ``series_uid``.
- Files that are not DICOM are skipped with a warning naming them.
- Frames (one per single-frame file, or each frame of an Enhanced /
  multi-frame file) are sorted by ImagePositionPatient projected on the slice
  normal (row cosines x column cosines); InstanceNumber is the fallback when
  positions are missing.
- RescaleSlope / RescaleIntercept (default 1 / 0) give float32 HU.
- Anything that would make the geometry a lie -- inconsistent Rows/Columns,
  PixelSpacing or orientation, missing or duplicated slices -- raises a
  ``DicomSeriesError`` naming the file and the reason.
- A file cut short (inside its header or its pixel data) is an error naming
  it, never a silently missing slice; so is an unreadable header value.
- Only CT is read unless ``allow_non_ct=True``: MR, NM, PET or RT dose values
  are not Hounsfield units (and RT dose frame offsets are not slices).

The frames, their geometry checks and their order along the slice normal
are ``rlhf_tf.data.dicom_frames``'s; the writer is
``rlhf_tf.data.dicom_write.write_dicom_series``.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union
import warnings

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID

from rlhf_tf.data import dicom_frames
from rlhf_tf.data.dicom_frames import DicomSeriesError
from rlhf_tf.data.volume import make_volume, Volume, VolumeError

PathsLike = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]

# Pixel data is read only when the geometry has been checked: deferring large
# elements keeps the header pass cheap and memory flat for big series.
_DEFER_SIZE = 4096
# Media Storage Directory Storage: a DICOMDIR index, never an image.
_DICOMDIR_SOP_CLASS = '1.2.840.10008.1.3.10'
# Modalities whose stored values, after rescale, are Hounsfield units.
CT_MODALITIES = ('CT',)


def _list_files(paths: PathsLike) -> list[Path]:
  """All candidate files: a directory walked recursively, or the given list."""
  if isinstance(paths, (str, os.PathLike)):
    root = Path(paths)
    if not root.exists():
      raise DicomSeriesError(f'{root}: no such file or directory')
    if root.is_file():
      return [root]
    files = sorted(p for p in root.rglob('*') if p.is_file())
    if not files:
      raise DicomSeriesError(f'{root}: directory is empty, no DICOM files')
    return files
  files = [Path(p) for p in paths]
  if not files:
    raise DicomSeriesError('empty list of files given, no DICOM files')
  for path in files:
    if not path.is_file():
      raise DicomSeriesError(f'{path}: not a file')
  return files


def _found(path: Path, ds: pydicom.Dataset) -> str:
  """What a parsed file holds, for messages: SOP class, elements, size."""
  meta = getattr(ds, 'file_meta', None)
  sop = meta.get('MediaStorageSOPClassUID') if meta is not None else None
  kind = UID(str(sop)).name if sop else 'no SOP class in its file meta'
  last = f', the last is {list(ds.keys())[-1]}' if len(ds) else ''
  return (
      f'{kind}; {len(ds)} top-level element(s){last}; '
      f'{path.stat().st_size} bytes'
  )


def series_header(path: Path, defer_size: int = _DEFER_SIZE):
  """(header, None) for a DICOM file of some series, (None, why) for a file
  to skip; one rule for every reader of a folder (this module and
  ``dicom_series``).

  Skipped: files that are not DICOM (no 'DICM' preamble) and DICOMDIR
  indexes. A file named like DICOM that is not readable as DICOM, a corrupt
  file, and a DICOM file whose data set ends before its SeriesInstanceUID
  (cut short, or not an image) raise DicomSeriesError naming the file: a
  slice cut short must never become a silently missing slice.
  """
  path = Path(path)
  try:
    ds = pydicom.dcmread(path, defer_size=defer_size, force=False)
  except InvalidDicomError as err:
    if path.suffix.lower() in ('.dcm', '.dicom'):
      raise DicomSeriesError(
          f'{path}: named like a DICOM file but not '
          f'readable as one (truncated, or not DICOM): '
          f'{err}'
      ) from err
    return None, f'not a DICOM file ({err})'
  except Exception as err:  # truncated or corrupt: never skip silently
    raise DicomSeriesError(
        f'{path}: unreadable DICOM file: ' f'{type(err).__name__}: {err}'
    ) from err
  if 'SeriesInstanceUID' in ds:
    return ds, None
  meta = getattr(ds, 'file_meta', None)
  sop = str(meta.get('MediaStorageSOPClassUID', '')) if meta is not None else ''
  if (
      sop == _DICOMDIR_SOP_CLASS
      or 'DirectoryRecordSequence' in ds
      or path.name.upper() == 'DICOMDIR'
  ):
    return None, (
        'a DICOMDIR (an index of files without '
        'SeriesInstanceUID, not an image)'
    )
  raise DicomSeriesError(
      f'{path}: DICOM file without SeriesInstanceUID, so it belongs to no '
      f'series: cut short inside its header, or not an image (found: '
      f'{_found(path, ds)})'
  )


def _read_header(path: Path) -> Optional[pydicom.Dataset]:
  """The parsed header of one file; None (with a warning) for a file to skip
  (see ``series_header``)."""
  ds, why = series_header(path)
  if ds is None:
    warnings.warn(f'{path}: skipped, {why}', stacklevel=4)
  return ds


def _read_headers(files: Iterable[Path]) -> list[tuple[Path, pydicom.Dataset]]:
  """Parses each file's header; non-DICOM files and DICOMDIRs are skipped."""
  headers = []
  for path in files:
    ds = _read_header(path)
    if ds is not None:
      headers.append((path, ds))
  return headers


def _describe_series(groups: dict) -> str:
  lines = []
  for uid, members in groups.items():
    ds = members[0][1]
    desc = str(ds.get('SeriesDescription', '') or '(no description)')
    modality = str(ds.get('Modality', '?'))
    lines.append(f'  {uid}: {desc!r}, {modality}, {len(members)} file(s)')
  return '\n'.join(lines)


def _choose_series(headers, series_uid: Optional[str], where: str):
  """The (path, dataset) pairs of the one series to read."""
  if not headers:
    raise DicomSeriesError(f'{where}: no DICOM image files found')
  groups = collections.OrderedDict()
  for path, ds in headers:
    groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
  if series_uid is not None:
    if series_uid not in groups:
      raise DicomSeriesError(
          f'{where}: series {series_uid} not found; '
          f'available series:\n{_describe_series(groups)}'
      )
    return groups[series_uid]
  if len(groups) > 1:
    # Structure sets, reports etc. sharing the folder are not candidates.
    images = [
        uid
        for uid, members in groups.items()
        if any('PixelData' in ds for _, ds in members)
    ]
    if len(images) == 1:
      warnings.warn(
          f'{where}: reading the only image series {images[0]}, '
          f'ignoring {len(groups) - 1} series without pixel data',
          stacklevel=3,
      )
      return groups[images[0]]
    raise DicomSeriesError(
        f'{where}: {len(groups)} series found, pass series_uid= to choose '
        f'one:\n{_describe_series(groups)}'
    )
  return next(iter(groups.values()))


def _check_pixels_readable(path: Path, ds: pydicom.Dataset) -> None:
  """Fails early, naming the file, on absent or undecodable pixel data."""
  if 'PixelData' not in ds:
    raise DicomSeriesError(
        f'{path}: missing PixelData (7FE0,0010): cut short '
        f'before its pixels, or not an image (found: '
        f'{_found(path, ds)})'
    )
  if int(ds.get('SamplesPerPixel', 1)) != 1:
    raise DicomSeriesError(
        f'{path}: SamplesPerPixel '
        f'{ds.SamplesPerPixel} (colour image), CT needs 1'
    )
  syntax = UID(ds.file_meta.get('TransferSyntaxUID', '1.2.840.10008.1.2'))
  try:
    decoder = get_decoder(syntax)
  except NotImplementedError as err:
    raise DicomSeriesError(
        f'{path}: unsupported transfer syntax '
        f'{syntax.name} ({syntax}): {err}'
    ) from err
  if not decoder.is_available:
    needs = '; '.join(decoder.missing_dependencies) or 'a pydicom plugin'
    raise DicomSeriesError(
        f'{path}: pixel data compressed with {syntax.name} ({syntax}) cannot '
        f'be decoded, no pydicom decoder plugin installed; install one of: '
        f'{needs}'
    )


def _decode(path: Path, ds: pydicom.Dataset, n_frames: int) -> np.ndarray:
  """The stored pixel values of a file as [frames, rows, columns]."""
  try:
    # The functional form, unlike ds.pixel_array, caches no copy in ds.
    pixels = pixel_array(ds)
  except Exception as err:  # pydicom raises many types; all mean unreadable.
    syntax = UID(ds.file_meta.get('TransferSyntaxUID', '1.2.840.10008.1.2'))
    raise DicomSeriesError(
        f'{path}: cannot decode pixel data (transfer '
        f'syntax {syntax.name}, {syntax}): {err}'
    ) from err
  del ds.PixelData  # the encoded bytes are not needed any more
  return pixels.reshape((n_frames,) + pixels.shape[-2:])


def _load_hu(
    frames: Sequence[dicom_frames.Frame], datasets: dict
) -> np.ndarray:
  """Decodes every file once into a preallocated float32 [Z, Y, X] array."""
  rows, cols = frames[0].rows, frames[0].cols
  hu = np.empty((len(frames), rows, cols), np.float32)
  by_file = collections.defaultdict(list)
  for z, frame in enumerate(frames):
    by_file[frame.path].append((z, frame))
  for path, members in by_file.items():
    ds = datasets[path]
    stored = _decode(path, ds, members[0][1].n_frames)
    if stored.shape[1:] != (rows, cols):
      raise DicomSeriesError(
          f'{path}: decoded pixels are {stored.shape[1:]}, '
          f'header says Rows x Columns = {rows} x {cols}'
      )
    for z, frame in members:
      # float64 keeps slope x stored + intercept exact before the one rounding
      # to float32 (the writer relies on this for bitwise round trips).
      values = stored[frame.frame_index].astype(np.float64)
      if frame.slope != 1.0:
        values *= frame.slope
      if frame.intercept != 0.0:
        values += frame.intercept
      hu[z] = values
      if not np.isfinite(hu[z]).all():
        raise DicomSeriesError(
            f'{frame.label}: rescaled values overflow float32 (RescaleSlope '
            f'{frame.slope:g}, RescaleIntercept {frame.intercept:g})'
        )
    del stored
  return hu


def _check_modality(members, allow_non_ct: bool) -> str:
  """The series' modality; non-CT is refused unless explicitly allowed."""
  path, ds = members[0]
  modality = str(ds.get('Modality', '') or 'CT').upper()
  if modality in CT_MODALITIES:
    return modality
  if not allow_non_ct:
    raise DicomSeriesError(
        f'{path}: Modality {modality}, not CT: its values are not Hounsfield '
        f'units (and e.g. RT dose frames are not slices); set '
        f'volume.allow_non_ct=True (allow_non_ct=True) to load it anyway'
    )
  warnings.warn(
      f'{path}: Modality {modality} loaded on request '
      f'(allow_non_ct): values are {modality} stored values after '
      f'rescale, not Hounsfield units',
      stacklevel=3,
  )
  return modality


def read_dicom_series(
    paths: PathsLike,
    series_uid: Optional[str] = None,
    name: Optional[str] = None,
    allow_non_ct: bool = False,
) -> Volume:
  """Reads one CT series (single-frame slices or multi-frame) as a Volume.

  Args:
    paths: a directory (searched recursively), one file, or a list of files.
    series_uid: the SeriesInstanceUID to read when several are present.
    name: the volume name; default SeriesDescription, else the series UID.
    allow_non_ct: read a non-CT series (MR, NM, ...) with a warning; its
      values are then not HU (``Volume.modality`` says what they are).

  Returns:
    A Volume with float32 HU [Z, Y, X] sorted along the slice normal,
    spacing (slice, row, column) mm, origin = ImagePositionPatient of the first
    sorted slice and orientation = ImageOrientationPatient.

  Raises:
    DicomSeriesError (a ValueError): naming the file and reason, for no DICOM
      files, several series without ``series_uid``, missing or undecodable
      pixel data, inconsistent Rows/Columns/PixelSpacing/orientation, and
      missing or duplicated slices, a file cut short, a malformed header
      value, or a non-CT modality without ``allow_non_ct``.
  """
  files = _list_files(paths)
  where = (
      str(paths)
      if isinstance(paths, (str, os.PathLike))
      else (f'{len(files)} given file(s)')
  )
  headers = _read_headers(files)
  members = _choose_series(headers, series_uid, where)
  modality = _check_modality(members, allow_non_ct)
  frames = []
  for path, ds in members:
    _check_pixels_readable(path, ds)
    frames.extend(dicom_frames.frames_of(path, ds))
  dicom_frames.check_consistent(frames)
  stack = dicom_frames.sort_frames(frames)
  datasets = dict(members)
  hu = _load_hu(stack.frames, datasets)
  first = datasets[stack.frames[0].path]
  if name is None:
    name = str(first.get('SeriesDescription', '') or first.SeriesInstanceUID)
  row_spacing, col_spacing = stack.frames[0].pixel_spacing
  try:
    return make_volume(
        hu,
        spacing=(stack.slice_spacing, row_spacing, col_spacing),
        origin=stack.origin,
        orientation=stack.orientation,
        name=name,
        modality=modality,
    )
  except VolumeError as err:  # e.g. a rescale overflowing float32
    raise DicomSeriesError(f'{where}: {err}') from err
