"""Finding every DICOM series under a folder: one scene per series.

A user's export of a study (or of many patients) is a tree of folders whose
files belong to several series; folder names mean nothing to DICOM.
``find_series(root)`` reads the header of every file in the tree (pixel data
deferred, so the pass stays cheap), groups the images by SeriesInstanceUID
over the whole tree, and says what it found and what it skipped and why:

  - not a DICOM file, or an unreadable one;
  - a DICOM object without SeriesInstanceUID (DICOMDIR and similar);
  - a series without pixel data (structure sets, reports, presentation
    states);
  - a series whose Modality is not CT (MR, segmentations ...), unless asked.

``read_series(series)`` then reads one of them with the per-series loader
(``dicom_io.read_dicom_series``) from its own files only.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
from pathlib import Path
import re
from typing import Sequence, Union

from rlhf_tf.data import dicom_frames, dicom_io
from rlhf_tf.data.volume import Volume

_DEFER_SIZE = 1024  # Bytes: large elements (pixel data) stay on disk.


@dataclasses.dataclass(frozen=True)
class SeriesInfo:
  """One image series found in a tree.

  Attributes:
    uid: SeriesInstanceUID.
    description: SeriesDescription ('' when absent).
    modality: Modality ('' when absent).
    patient_id: PatientID ('' when absent).
    files: the series' files, sorted.
    folder: the deepest folder holding all of them.
  """

  uid: str
  description: str
  modality: str
  patient_id: str
  files: tuple

  @property
  def folder(self) -> Path:
    return Path(os.path.commonpath([str(Path(f).parent) for f in self.files]))

  @property
  def scene_name(self) -> str:
    """A stable, readable id: folder (or description) + a UID digest."""
    base = self.description or self.folder.name or 'series'
    base = re.sub(r'[^A-Za-z0-9._-]+', '_', base).strip('_')[:40] or 'series'
    digest = hashlib.sha256(self.uid.encode()).hexdigest()[:8]
    return f'{base}-{digest}'


@dataclasses.dataclass(frozen=True)
class SeriesListing:
  """What a tree holds: readable image series and skipped files / series."""

  root: Path
  series: tuple  # SeriesInfo, ordered by folder then UID.
  skipped: tuple  # (path or 'series UID', reason)

  def describe(self) -> str:
    """A listing for logs and the console: one line per series and per
    skipped item."""
    lines = [
        f'{self.root}: {len(self.series)} image series, '
        f'{len(self.skipped)} item(s) skipped'
    ]
    for s in self.series:
      lines.append(
          f'  series {s.uid}: {s.description or "(no description)"!r}'
          f', {s.modality or "?"}, {len(s.files)} file(s) in '
          f'{s.folder}'
      )
    for what, reason in self.skipped:
      lines.append(f'  skipped {what}: {reason}')
    return '\n'.join(lines)


def _header(path: Path):
  """(dataset, None) or (None, reason it is skipped); a file cut short or
  corrupt raises DicomSeriesError naming it (dicom_io.series_header): its
  series would silently lose a slice."""
  return dicom_io.series_header(path, defer_size=_DEFER_SIZE)


def find_series(
    root: Union[str, os.PathLike], modalities: Sequence[str] = ('CT',)
) -> SeriesListing:
  """Every image series under ``root`` (searched recursively).

  Args:
    root: a folder (or one DICOM file).
    modalities: the Modality values kept; () keeps every image series.

  Returns:
    SeriesListing; its ``describe()`` names each series and each skipped
    file or series with the reason.

  Raises:
    DicomSeriesError (a ValueError): if root does not exist or holds no
      file at all.
  """
  root = Path(root)
  if not root.exists():
    raise dicom_frames.DicomSeriesError(f'{root}: no such file or directory')
  files = (
      [root]
      if root.is_file()
      else sorted(p for p in root.rglob('*') if p.is_file())
  )
  if not files:
    raise dicom_frames.DicomSeriesError(
        f'{root}: directory is empty, no DICOM ' f'files'
    )
  skipped = []
  groups = collections.OrderedDict()
  for path in files:
    ds, reason = _header(path)
    if ds is None:
      skipped.append((str(path), reason))
      continue
    groups.setdefault(str(ds.SeriesInstanceUID), []).append((path, ds))
  series = []
  for uid, members in groups.items():
    first = members[0][1]
    modality = str(first.get('Modality', '') or '')
    if not any('PixelData' in ds for _, ds in members):
      skipped.append(
          (
              f'series {uid}',
              f'{modality or "?"} series without '
              f'pixel data ({len(members)} file(s)), not an image',
          )
      )
      continue
    if modalities and modality not in modalities:
      skipped.append(
          (
              f'series {uid}',
              f'modality {modality or "?"}, not '
              f'{"/".join(modalities)} ({len(members)} file(s))',
          )
      )
      continue
    series.append(
        SeriesInfo(
            uid=uid,
            description=str(first.get('SeriesDescription', '') or ''),
            modality=modality,
            patient_id=str(first.get('PatientID', '') or ''),
            files=tuple(str(p) for p, _ in sorted(members, key=lambda m: m[0])),
        )
    )
  series.sort(key=lambda s: (str(s.folder), s.uid))
  return SeriesListing(root=root, series=tuple(series), skipped=tuple(skipped))


def read_series(series: SeriesInfo) -> Volume:
  """The Volume of one found series, read from its own files only."""
  return dicom_io.read_dicom_series(
      list(series.files), series_uid=series.uid, name=series.description or None
  )
