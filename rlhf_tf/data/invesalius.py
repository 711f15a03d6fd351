"""Reader for InVesalius 3 project files (``.inv3``) into a ``Volume``.

An ``.inv3`` file is a tar archive (gzip-compressed unless the project was
saved with compression off) holding one folder with:

- ``main.plist`` (XML property list). Keys used here: ``matrix`` ->
  {``filename``, ``dtype`` (numpy name, e.g. ``'int16'``), ``shape``
  ([slices, rows, columns])}, ``spacing`` ([x, y, z] mm, VTK order -- the
  reverse of the array axes), ``orientation`` (1 or ``'AXIAL'`` for an axial
  stack), ``modality`` and ``masks`` ({index: mask plist name}).
- ``matrix.dat``: the voxels, exactly what InVesalius' ``numpy.memmap`` wrote:
  C order, shape ``matrix.shape``, no header, no padding, native byte order of
  the saving machine (always little-endian in practice, so it is read as '<'
  unless the dtype names an order). Values are already Hounsfield units.
- ``mask_<i>.plist`` + ``mask_<i>.dat``: uint8 segmentation masks. Unlike the
  image, a mask memmap is one voxel LARGER along every axis
  (``mask_shape = shape + 1``): index 0 of each axis is a bookkeeping buffer
  (per-slice "already thresholded / edited" flags), so the voxels are
  ``mask[1:, 1:, 1:]``. Voxel codes: 0 outside and 255 inside by threshold,
  1/2 erased and 253/254 added by hand editing, so ``>= 128`` means inside.
- surfaces (``surface_<i>.vtp``) and measurements, which are not needed here
  and never read into memory.

InVesalius stores every axial slice bottom-up (it flips DICOM rows with
``[::-1]`` to match VTK's lower-left image origin), so row 0 of ``matrix.dat``
is the patient's posterior side. ``read_inv3`` flips the rows back so the
returned array follows the DICOM row order that ``Volume`` assumes (row index
growing towards posterior, orientation (1, 0, 0, 0, 1, 0)); slices are already
ordered inferior -> superior. The projects store no patient position, so the
origin is (0, 0, 0).

Coronal and sagittal projects use other axis layouts and are refused with a
clear error rather than returned with silently wrong geometry.
"""

from __future__ import annotations

import os
from pathlib import Path
import plistlib
import tarfile
from typing import Optional
import zlib

import numpy as np

from rlhf_tf.data.volume import AXIAL, make_volume, Volume
from rlhf_tf.input_error import InputError


class Inv3Error(InputError):
  """An .inv3 project that cannot become a faithful Volume; names the file."""


# dtypes InVesalius can write for the image matrix; anything else is refused.
_IMAGE_DTYPES = (
    'int8',
    'uint8',
    'int16',
    'uint16',
    'int32',
    'uint32',
    'float32',
    'float64',
)
# Mask voxel codes >= this are "inside" (255 threshold, 253/254 hand-added).
_MASK_INSIDE = 128
# Surface meshes are the bulk of a project and irrelevant to the volume.
_SKIPPED_SUFFIXES = ('.vtp', '.vtk', '.stl')


def _read_members(path: Path) -> dict[str, bytes]:
  """Reads the plists and raw arrays of the tar into memory (no meshes).

  Streams the archive once (gzip is not seekable) and keys members by base
  name, because InVesalius nests them in a random temp-folder name.
  """
  with open(path, 'rb') as f:
    magic = f.read(2)
  # Check the container up front so a wrong file type and a damaged project
  # get different messages (streaming mode reports both as ReadError).
  if magic != b'\x1f\x8b' and not tarfile.is_tarfile(path):
    raise Inv3Error(
        f'{path}: not an InVesalius project (expected a gzip '
        f'tar archive, found neither gzip nor tar data)'
    )
  members: dict[str, bytes] = {}
  try:
    with tarfile.open(path, mode='r|*') as tar:
      for info in tar:
        if not info.isfile():
          continue
        base = os.path.basename(info.name)
        if base.lower().endswith(_SKIPPED_SUFFIXES):
          continue
        if base in members:
          raise Inv3Error(
              f'{path}: archive holds two members named {base!r}; '
              f'cannot tell which belongs to the project'
          )
        members[base] = tar.extractfile(info).read()
  except (EOFError, zlib.error, tarfile.TarError, OSError) as e:
    raise Inv3Error(
        f'{path}: corrupt or truncated .inv3 archive (gzip tar '
        f'expected): {e}'
    ) from e
  return members


def _load_plist(path: Path, members: dict[str, bytes], name: str) -> dict:
  """Parses member ``name`` as a property list dict, or a clear ValueError."""
  if name not in members:
    raise Inv3Error(
        f'{path}: archive has no {name} (members: '
        f'{", ".join(sorted(members)) or "none"})'
    )
  try:
    value = plistlib.loads(members[name])
  except Exception as e:  # plistlib raises several parser-specific types
    raise Inv3Error(f'{path}: {name} is not a valid property list: {e}') from e
  if not isinstance(value, dict):
    raise Inv3Error(
        f'{path}: {name} must hold a dict, got ' f'{type(value).__name__}'
    )
  return value


def _shape3(path: Path, what: str, value) -> tuple[int, int, int]:
  """Validates a 3-entry positive integer shape from a plist."""
  try:
    shape = tuple(int(s) for s in value)
  except (TypeError, ValueError):
    shape = ()
  if len(shape) != 3 or min(shape) < 1:
    raise Inv3Error(
        f'{path}: {what} must be 3 positive integers, got ' f'{value!r}'
    )
  return shape


def _image_dtype(path: Path, name) -> np.dtype:
  """The numpy dtype for the plist's dtype string; little-endian by default."""
  try:
    dtype = np.dtype(str(name))
  except TypeError:
    dtype = None
  if dtype is None or dtype.newbyteorder('=').name not in _IMAGE_DTYPES:
    raise Inv3Error(
        f'{path}: unknown matrix dtype {name!r} in main.plist '
        f'(supported: {", ".join(_IMAGE_DTYPES)})'
    )
  if dtype.byteorder in ('=', '|'):
    # Native at save time; every platform InVesalius ships on is little-endian.
    dtype = dtype.newbyteorder('<')
  return dtype


def _raw_array(
    path: Path,
    members: dict[str, bytes],
    member: str,
    shape: tuple[int, ...],
    dtype: np.dtype,
) -> np.ndarray:
  """Interprets a headerless memmap dump, checking its size exactly."""
  if member not in members:
    raise Inv3Error(
        f'{path}: archive has no {member} (members: '
        f'{", ".join(sorted(members)) or "none"})'
    )
  raw = members[member]
  expected = int(np.prod(shape)) * dtype.itemsize
  if len(raw) != expected:
    raise Inv3Error(
        f'{path}: {member} has {len(raw)} bytes but shape '
        f'{list(shape)} of {dtype.name} needs {expected}'
    )
  return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _spacing_zyx(path: Path, value) -> np.ndarray:
  """Plist spacing is (x, y, z) like VTK; the Volume wants (z, y, x)."""
  try:
    xyz = np.asarray(value, np.float64).reshape(-1)
  except (TypeError, ValueError):
    xyz = np.zeros(0)
  if xyz.shape != (3,) or not np.all(np.isfinite(xyz)) or np.any(xyz <= 0):
    raise Inv3Error(
        f'{path}: spacing in main.plist must be 3 positive mm '
        f'values (x, y, z), got {value!r}'
    )
  return xyz[::-1].copy()


def _check_axial(path: Path, orientation) -> None:
  """Refuses coronal/sagittal projects, whose matrix axes are permuted."""
  if orientation in (1, '1') or str(orientation).upper() == 'AXIAL':
    return
  raise Inv3Error(
      f'{path}: only axial InVesalius projects are supported, '
      f'this one has orientation {orientation!r} (1/AXIAL '
      f'expected; coronal/sagittal matrices use another axis '
      f'layout)'
  )


def _mask_field(plist: dict, key: str):
  """Mask keys use underscores in 3.x projects, spaces in early betas."""
  if key in plist:
    return plist[key]
  return plist.get(key.replace('_', ' '))


def _read_mask(
    path: Path,
    members: dict[str, bytes],
    plist_name: str,
    shape: tuple[int, int, int],
) -> tuple[str, np.ndarray]:
  """Returns (mask name, boolean [Z, Y, X] inside map) for one mask plist."""
  plist = _load_plist(path, members, plist_name)
  data_name = _mask_field(plist, 'mask_file')
  if not data_name:
    raise Inv3Error(f'{path}: {plist_name} names no mask_file')
  buffered = tuple(s + 1 for s in shape)
  mask_shape = _shape3(
      path, f'mask_shape in {plist_name}', _mask_field(plist, 'mask_shape')
  )
  if mask_shape != buffered:
    raise Inv3Error(
        f'{path}: {plist_name} has mask_shape {list(mask_shape)}; '
        f'expected the image shape plus one buffer voxel per '
        f'axis, {list(buffered)}'
    )
  raw = _raw_array(
      path,
      members,
      os.path.basename(str(data_name)),
      mask_shape,
      np.dtype(np.uint8),
  )
  inside = raw[1:, 1:, 1:] >= _MASK_INSIDE
  name = str(plist.get('name', plist_name.rsplit('.', 1)[0]))
  return name, inside


def _label_map(
    path: Path,
    members: dict[str, bytes],
    masks: dict,
    shape: tuple[int, int, int],
):
  """Merges the project's masks into one int32 label map (0 = no mask).

  Mask ``i`` (plist index order) gets label ``i + 1``. Masks may overlap (the
  Cranium's bone mask lies inside its soft-tissue mask), so they are painted
  largest first: a smaller mask nested in a larger one keeps its voxels.
  Returns (labels or None, label_names).
  """
  if not masks:
    return None, ()
  if not isinstance(masks, dict):
    raise Inv3Error(
        f'{path}: masks in main.plist must be a dict, got '
        f'{type(masks).__name__}'
    )
  loaded = []
  for key in sorted(masks, key=lambda k: int(k) if str(k).isdigit() else 0):
    loaded.append(_read_mask(path, members, str(masks[key]), shape))
  labels = np.zeros(shape, np.int32)
  order = sorted(range(len(loaded)), key=lambda i: -int(loaded[i][1].sum()))
  for i in order:
    labels[loaded[i][1]] = i + 1
  names = tuple((i + 1, name) for i, (name, _) in enumerate(loaded))
  return labels, names


def _modality(path: Path, main: dict, allow_non_ct: bool) -> str:
  """The project's modality; non-CT is refused unless explicitly allowed."""
  modality = str(main.get('modality') or 'CT').strip().upper() or 'CT'
  if modality != 'CT' and not allow_non_ct:
    raise Inv3Error(
        f'{path}: modality {modality} in main.plist, not CT: its '
        f'values are not Hounsfield units; set '
        f'volume.allow_non_ct=True (allow_non_ct=True) to load '
        f'it anyway'
    )
  return modality


def read_inv3(
    path,
    name: Optional[str] = None,
    masks: bool = True,
    allow_non_ct: bool = False,
) -> Volume:
  """Reads an InVesalius ``.inv3`` project into a ``Volume``.

  Args:
    path: the ``.inv3`` file.
    name: volume name; defaults to the file stem (the plist's ``name`` is the
      patient name, which we do not propagate).
    masks: merge the project's masks into ``labels`` (see ``_label_map``);
      False skips them and returns ``labels=None``.
    allow_non_ct: read a non-CT project (values then not HU).

  Returns:
    Volume with float32 HU [Z, Y, X] (rows in DICOM order, see module doc),
    spacing (z, y, x) mm, origin (0, 0, 0), axial orientation.

  Raises:
    FileNotFoundError: ``path`` does not exist.
    Inv3Error (an InputError, a ValueError): naming the file, for a non-tar
      file, a missing main.plist or matrix.dat, a byte-size mismatch, an
      unknown dtype, bad spacing/shape, a non-axial or non-CT project, a
      malformed mask or non-finite voxels.
  """
  path = Path(path)
  if not path.is_file():
    raise FileNotFoundError(f'{path}: no such InVesalius project file')
  members = _read_members(path)
  main = _load_plist(path, members, 'main.plist')
  matrix = main.get('matrix')
  if not isinstance(matrix, dict):
    raise Inv3Error(
        f'{path}: main.plist has no matrix dict (keys: '
        f'{", ".join(sorted(main))})'
    )
  shape = _shape3(path, 'matrix shape in main.plist', matrix.get('shape'))
  dtype = _image_dtype(path, matrix.get('dtype'))
  spacing = _spacing_zyx(path, main.get('spacing'))
  _check_axial(path, main.get('orientation', 1))
  modality = _modality(path, main, allow_non_ct)
  data_name = os.path.basename(str(matrix.get('filename') or 'matrix.dat'))
  voxels = _raw_array(path, members, data_name, shape, dtype)
  labels, label_names = (
      _label_map(path, members, main.get('masks'), shape)
      if masks
      else (None, ())
  )
  # Undo InVesalius' bottom-up row storage (see module doc).
  hu = np.ascontiguousarray(voxels[:, ::-1, :], dtype=np.float32)
  if labels is not None:
    labels = np.ascontiguousarray(labels[:, ::-1, :])
  try:
    return make_volume(
        hu,
        spacing,
        origin=(0.0, 0.0, 0.0),
        labels=labels,
        label_names=label_names,
        orientation=AXIAL,
        name=name or path.stem,
        modality=modality,
    )
  except ValueError as e:  # make_volume's checks (e.g. non-finite voxels)
    raise Inv3Error(f'{path}: {e}') from e
