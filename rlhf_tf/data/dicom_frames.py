"""The frames of a DICOM series and the stack they make (see ``dicom_io``).

One ``Frame`` per 2D frame (a single-frame file, or each frame of an
Enhanced / multi-frame file) with its header facts, each looked up where
Enhanced objects put it (per-frame, then shared functional groups, then the
top level); ``check_consistent`` refuses frames of another grid or
orientation; ``sort_frames`` stacks them along the slice normal
(ImagePositionPatient, InstanceNumber as the fallback) and refuses
duplicated or missing slices. Every refusal is a ``DicomSeriesError`` that
names the file (and frame) and the reason.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Sequence
import warnings

import numpy as np

from rlhf_tf.data.volume import AXIAL
from rlhf_tf.input_error import InputError

# Two slices closer than this along the normal are the same slice; a step
# further than this from the typical step means a missing slice.
_REL_TOL, _ABS_TOL_MM = 0.01, 0.01
# Direction cosines and pixel spacings agree when within this.
_COSINE_TOL, _SPACING_TOL_MM = 1e-4, 1e-4


class DicomSeriesError(InputError):
  """A DICOM input that cannot become a faithful Volume; says file and why."""


@dataclasses.dataclass(frozen=True)
class Frame:
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
class Stack:
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


def frames_of(path: Path, ds) -> list:
  """One Frame per frame of the file; header errors name the file."""
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
  """One Frame per frame of the file, geometry from the right place."""
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
        Frame(
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


def check_consistent(frames) -> None:
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


def sort_frames(frames) -> Stack:
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
  return Stack(frames, spacing, origin, tuple(orientation))
