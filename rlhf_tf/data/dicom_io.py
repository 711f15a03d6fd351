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

The writer is ``rlhf_tf.data.dicom_write.write_dicom_series``.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union
import warnings

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID

from rlhf_tf.data.volume import AXIAL, make_volume, Volume, VolumeError
from rlhf_tf.input_error import InputError

PathsLike = Union[str, os.PathLike, Sequence[Union[str, os.PathLike]]]

# Pixel data is read only when the geometry has been checked: deferring large
# elements keeps the header pass cheap and memory flat for big series.
_DEFER_SIZE = 4096
# Two slices closer than this along the normal are the same slice; a step
# further than this from the typical step means a missing slice.
_REL_TOL, _ABS_TOL_MM = 0.01, 0.01
# Direction cosines and pixel spacings agree when within this.
_COSINE_TOL, _SPACING_TOL_MM = 1e-4, 1e-4


# Media Storage Directory Storage: a DICOMDIR index, never an image.
_DICOMDIR_SOP_CLASS = '1.2.840.10008.1.3.10'
# Modalities whose stored values, after rescale, are Hounsfield units.
CT_MODALITIES = ('CT',)


class DicomSeriesError(InputError):
  """A DICOM input that cannot become a faithful Volume; says file and why."""


@dataclasses.dataclass(frozen=True)
class _Frame:
  """The header facts of one 2D frame (a single-frame file or one frame)."""

  path: Path
  frame_index: int  # index into the file's frames
  n_frames: int  # frames in the file
  rows: int
  cols: int
  pixel_spacing: Optional[tuple]  # (row spacing, column spacing) mm
  orientation: Optional[tuple]  # 6 direction cosines
  position: Optional[tuple]  # ImagePositionPatient (x, y, z) mm
  order_key: Optional[tuple]  # (InstanceNumber, in-file index) fallback
  slope: float
  intercept: float
  thickness: Optional[float]  # SpacingBetweenSlices, else SliceThickness

  @property
  def label(self) -> str:
    if self.n_frames == 1:
      return str(self.path)
    return f'{self.path} (frame {self.frame_index + 1})'


@dataclasses.dataclass(frozen=True)
class _Stack:
  frames: list
  slice_spacing: float
  origin: np.ndarray
  orientation: tuple


def slice_normal(orientation: Sequence[float]) -> np.ndarray:
  """Unit slice normal = row cosines x column cosines (DICOM convention).

  Raises:
    ValueError: when the 6 cosines are not two orthonormal directions.
  """
  cosines = np.asarray(orientation, np.float64).reshape(-1)
  if cosines.shape != (6,) or not np.all(np.isfinite(cosines)):
    raise ValueError(
        f'orientation needs 6 finite direction cosines, got '
        f'{cosines.tolist()}'
    )
  row, col = cosines[:3], cosines[3:]
  if (
      abs(np.linalg.norm(row) - 1) > 1e-3
      or abs(np.linalg.norm(col) - 1) > 1e-3
      or abs(row @ col) > 1e-3
  ):
    raise ValueError(
        f'orientation {cosines.tolist()} is not two orthonormal '
        f'direction cosines'
    )
  normal = np.cross(row, col)
  return normal / np.linalg.norm(normal)


def _value(item, keyword):
  """A present, non-empty element value, else None."""
  if item is None or keyword not in item:
    return None
  value = item[keyword].value
  return None if value is None or value == '' else value


def _group_value(ds, per_frame, i, sequence, keyword, top_level=True):
  """Looks a value up in per-frame, then shared functional groups, then the
  top level -- the order in which Enhanced/multi-frame objects override."""
  candidates = []
  if per_frame is not None:
    candidates.append(per_frame[i])
  if 'SharedFunctionalGroupsSequence' in ds and len(
      ds.SharedFunctionalGroupsSequence
  ):
    candidates.append(ds.SharedFunctionalGroupsSequence[0])
  for groups in candidates:
    if sequence in groups and len(groups[sequence].value):
      value = _value(groups[sequence][0], keyword)
      if value is not None:
        return value
  return _value(ds, keyword) if top_level else None


def _floats(value, count, label, keyword):
  if value is None:
    return None
  try:
    floats = tuple(float(v) for v in (value if count > 1 else [value]))
  except (TypeError, ValueError) as err:
    raise DicomSeriesError(f'{label}: unreadable {keyword} {value!r}') from err
  if len(floats) != count or not all(np.isfinite(floats)):
    raise DicomSeriesError(
        f'{label}: {keyword} needs {count} finite ' f'numbers, got {value!r}'
    )
  return floats if count > 1 else floats[0]


def _int(value, label, keyword, default=None) -> Optional[int]:
  """An integer header value (IS strings too), or an error naming it."""
  if value is None:
    return default
  try:
    number = float(value)
  except (TypeError, ValueError) as err:
    raise DicomSeriesError(
        f'{label}: unreadable {keyword} {value!r} (an ' f'integer expected)'
    ) from err
  if not number.is_integer():
    raise DicomSeriesError(f'{label}: {keyword} {value!r} is not an integer')
  return int(number)


def _frames_of(path: Path, ds) -> list:
  """One _Frame per frame of the file; header errors name the file."""
  try:
    return _parse_frames(path, ds)
  except DicomSeriesError:
    raise
  except (ValueError, TypeError, KeyError, AttributeError, IndexError) as err:
    # pydicom converts values lazily, so a malformed element (a bad VR, a
    # value that does not parse) only fails here, on first access.
    raise DicomSeriesError(
        f'{path}: malformed DICOM header: ' f'{type(err).__name__}: {err}'
    ) from err


def _grid_frame_offsets(path: Path, ds, n_frames: int) -> Optional[dict]:
  """RT dose frames: GridFrameOffsetVector (mm along the slice normal from
  the top-level ImagePositionPatient), or None when not applicable."""
  value = _value(ds, 'GridFrameOffsetVector')
  origin = _value(ds, 'ImagePositionPatient')
  orientation = _value(ds, 'ImageOrientationPatient')
  if n_frames < 2 or value is None or origin is None or orientation is None:
    return None
  mm = _floats(value, n_frames, str(path), 'GridFrameOffsetVector')
  try:
    normal = slice_normal(
        _floats(orientation, 6, str(path), 'ImageOrientationPatient')
    )
  except ValueError as err:
    raise DicomSeriesError(f'{path}: {err}') from err
  return dict(
      mm=mm,
      normal=normal,
      origin=_floats(origin, 3, str(path), 'ImagePositionPatient'),
  )


def _parse_frames(path: Path, ds) -> list:
  """One _Frame per frame of the file, geometry from the right place."""
  n_frames = _int(_value(ds, 'NumberOfFrames'), str(path), 'NumberOfFrames', 1)
  if n_frames < 1:
    raise DicomSeriesError(f'{path}: NumberOfFrames is {n_frames}, needs >= 1')
  per_frame = ds.get('PerFrameFunctionalGroupsSequence')
  if per_frame is not None and len(per_frame) != n_frames:
    raise DicomSeriesError(
        f'{path}: PerFrameFunctionalGroupsSequence has '
        f'{len(per_frame)} items for {n_frames} frames'
    )
  if 'Rows' not in ds or 'Columns' not in ds:
    raise DicomSeriesError(f'{path}: missing Rows/Columns')
  instance = _int(_value(ds, 'InstanceNumber'), str(path), 'InstanceNumber')
  rows = _int(_value(ds, 'Rows'), str(path), 'Rows', 0)
  cols = _int(_value(ds, 'Columns'), str(path), 'Columns', 0)
  if rows < 1 or cols < 1:
    raise DicomSeriesError(
        f'{path}: Rows x Columns is {rows} x {cols}, an '
        f'image needs at least 1 x 1'
    )
  offsets = _grid_frame_offsets(path, ds, n_frames)
  frames = []
  for i in range(n_frames):
    label = str(path) if n_frames == 1 else f'{path} (frame {i + 1})'

    def get(seq, kw, top=True, i=i):
      return _group_value(ds, per_frame, i, seq, kw, top)

    # A multi-frame file's top-level position can only describe frame 1,
    # unless a GridFrameOffsetVector (RT dose) places the others from it.
    position = get(
        'PlanePositionSequence', 'ImagePositionPatient', n_frames == 1
    )
    if position is None and offsets is not None:
      position = tuple(
          float(c)
          for c in np.asarray(offsets['origin'])
          + offsets['normal'] * (offsets['mm'][i] - offsets['mm'][0])
      )
    thickness = get('PixelMeasuresSequence', 'SpacingBetweenSlices') or get(
        'PixelMeasuresSequence', 'SliceThickness'
    )
    stack_index = _int(
        get('FrameContentSequence', 'InStackPositionNumber', False),
        label,
        'InStackPositionNumber',
    )
    order_key = None
    if n_frames > 1:
      order_key = (instance or 0, stack_index or i + 1)
    elif instance is not None:
      order_key = (instance, 0)
    slope = get('PixelValueTransformationSequence', 'RescaleSlope')
    intercept = get('PixelValueTransformationSequence', 'RescaleIntercept')
    frames.append(
        _Frame(
            path=path,
            frame_index=i,
            n_frames=n_frames,
            rows=rows,
            cols=cols,
            pixel_spacing=_floats(
                get('PixelMeasuresSequence', 'PixelSpacing'),
                2,
                label,
                'PixelSpacing',
            ),
            orientation=_floats(
                get('PlaneOrientationSequence', 'ImageOrientationPatient'),
                6,
                label,
                'ImageOrientationPatient',
            ),
            position=_floats(position, 3, label, 'ImagePositionPatient'),
            order_key=order_key,
            slope=1.0
            if slope is None
            else _floats(slope, 1, label, 'RescaleSlope'),
            intercept=0.0
            if intercept is None
            else _floats(intercept, 1, label, 'RescaleIntercept'),
            thickness=_floats(thickness, 1, label, 'SliceThickness'),
        )
    )
  return frames


def _check_consistent(frames) -> None:
  """Every frame must share the first one's grid and orientation."""
  ref = frames[0]
  for frame in frames:
    if frame.pixel_spacing is None:
      raise DicomSeriesError(f'{frame.label}: missing PixelSpacing')
    if frame.slope == 0.0:
      raise DicomSeriesError(f'{frame.label}: RescaleSlope is 0')
  for frame in frames[1:]:
    if (frame.rows, frame.cols) != (ref.rows, ref.cols):
      raise DicomSeriesError(
          f'{frame.label}: inconsistent Rows x Columns {frame.rows} x '
          f'{frame.cols}, {ref.label} has {ref.rows} x {ref.cols}'
      )
    if not np.allclose(
        frame.pixel_spacing, ref.pixel_spacing, rtol=0, atol=_SPACING_TOL_MM
    ):
      raise DicomSeriesError(
          f'{frame.label}: inconsistent PixelSpacing {frame.pixel_spacing}, '
          f'{ref.label} has {ref.pixel_spacing}'
      )
    if (frame.orientation is None) != (ref.orientation is None) or (
        frame.orientation is not None
        and not np.allclose(
            frame.orientation, ref.orientation, rtol=0, atol=_COSINE_TOL
        )
    ):
      raise DicomSeriesError(
          f'{frame.label}: inconsistent orientation (ImageOrientationPatient)'
          f' {frame.orientation}, {ref.label} has {ref.orientation}'
      )


def _sort_by_position(frames, normal):
  """Sorts along the normal; returns (frames, spacing, origin)."""
  positions = np.asarray([f.position for f in frames], np.float64)
  along = positions @ normal
  order = np.argsort(along, kind='stable')
  frames = [frames[i] for i in order]
  positions, along = positions[order], along[order]
  if len(frames) == 1:
    return frames, _fallback_spacing(frames), positions[0]
  steps = np.diff(along)
  step = float(np.median(steps))
  tol = max(_REL_TOL * step, _ABS_TOL_MM)
  same = np.flatnonzero(steps <= tol)
  if same.size:
    i = int(same[0])
    raise DicomSeriesError(
        f'duplicated slice: {frames[i].label} and {frames[i + 1].label} are '
        f'both at {along[i]:.4f} mm along the slice normal'
    )
  uneven = np.flatnonzero(np.abs(steps - step) > tol)
  if uneven.size:
    i = int(uneven[0])
    raise DicomSeriesError(
        f'missing slice(s) or uneven spacing: {steps[i]:.4f} mm between '
        f'{frames[i].label} and {frames[i + 1].label}, while the series '
        f'steps {step:.4f} mm (tolerance {tol:.4f} mm)'
    )
  drift = positions - positions[0] - np.outer(along - along[0], normal)
  if np.abs(drift).max() > tol:
    warnings.warn(
        f'{frames[0].label}: slices are not stacked along the '
        f'slice normal (gantry tilt?), in-plane drift up to '
        f'{np.abs(drift).max():.3f} mm is ignored',
        stacklevel=4,
    )
  spacing = (along[-1] - along[0]) / (len(frames) - 1)
  return frames, float(spacing), positions[0]


def _fallback_spacing(frames) -> float:
  if frames[0].thickness is not None and frames[0].thickness > 0:
    return float(frames[0].thickness)
  warnings.warn(
      f'{frames[0].label}: no slice spacing known (single slice '
      f'or no positions, no SpacingBetweenSlices/SliceThickness); '
      f'using 1 mm',
      stacklevel=5,
  )
  return 1.0


def _sort_by_instance(frames):
  """InstanceNumber order when positions are missing."""
  missing = [f for f in frames if f.position is None]
  warnings.warn(
      f'{len(missing)} frame(s) lack ImagePositionPatient (e.g. '
      f'{missing[0].label}): sorting by InstanceNumber, slice '
      f'spacing from SpacingBetweenSlices/SliceThickness',
      stacklevel=4,
  )
  for frame in frames:
    if frame.order_key is None:
      raise DicomSeriesError(
          f'{frame.label}: neither ImagePositionPatient '
          f'nor InstanceNumber, cannot order the slice'
      )
  frames = sorted(frames, key=lambda f: f.order_key)
  for a, b in zip(frames, frames[1:]):
    if a.order_key == b.order_key:
      raise DicomSeriesError(
          f'duplicated slice: {a.label} and {b.label} '
          f'have the same InstanceNumber {a.order_key[0]}'
      )
  origin = frames[0].position or (0.0, 0.0, 0.0)
  return frames, _fallback_spacing(frames), np.asarray(origin, np.float64)


def _sort_frames(frames) -> _Stack:
  orientation = frames[0].orientation
  if orientation is None:
    warnings.warn(
        f'{frames[0].label}: no ImageOrientationPatient, assuming ' f'axial',
        stacklevel=3,
    )
    orientation = AXIAL
  try:
    normal = slice_normal(orientation)
  except ValueError as err:
    raise DicomSeriesError(f'{frames[0].label}: {err}') from err
  if all(f.position is not None for f in frames):
    frames, spacing, origin = _sort_by_position(frames, normal)
  else:
    frames, spacing, origin = _sort_by_instance(frames)
  return _Stack(frames, spacing, origin, tuple(orientation))


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


def _load_hu(frames: Sequence[_Frame], datasets: dict) -> np.ndarray:
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
    frames.extend(_frames_of(path, ds))
  _check_consistent(frames)
  stack = _sort_frames(frames)
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
