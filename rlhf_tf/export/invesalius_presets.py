"""InVesalius raycasting presets (.plist) as SeparableTFs (baselines).

The presets ship in Debian's ``invesalius`` package under
/usr/share/invesalius/presets/raycasting/ (GPL: cached outside the repo,
never committed). ``fetch_presets`` pulls them with ``apt-get download`` and
``dpkg-deb`` into ``<cache>/invesalius_presets`` ($RLHF_TF_DATA or
~/.cache/rlhf_tf, like the Cranium sample):

  python -m rlhf_tf.export.invesalius_presets     # prints the folder

Semantics, from InVesalius' invesalius/data/volume.py (Volume.Create16b/8b
ColorTable, CreateOpacityTable, Create8bOpacityTable):

- advancedCLUT presets: every point {x: HU, y: opacity} of every curve in
  ``16bitClutCurves`` goes into ONE vtkPiecewiseFunction (points sorted by
  HU), on top of a zero segment AddSegment(0, 0, 65535, 0) in the shifted
  scalar range (HU - min HU); colours are the matching ``16bitClutColors``
  at the same HU.
- other presets: opacity 0 up to wl - ww/2, a ramp to 1 at wl + ww/2, and
  the colour list ``color_list/<CLUT>.plist`` (256 RGB bytes; grey for
  "No CLUT") spread evenly over [wl - ww/2, wl + ww/2].

In both, the zero point at shifted 65535 makes the opacity fall linearly
from the last point to 0 at HU = min HU + 65535 (reproduced here with the
volume's minimum HU). No gradient opacity; the unit distance is VTK's
default 1 (mm).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import plistlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import Optional

import numpy as np

from rlhf_tf.export import tables

PACKAGE = 'invesalius'
_PRESET_DIR = 'usr/share/invesalius/presets/raycasting/'
_FOLDER = 'invesalius_presets'
_SHIFTED_MAX = 65535.0


def default_cache_dir() -> Path:
  env = os.environ.get('RLHF_TF_DATA')
  return Path(env).expanduser() if env else Path.home() / '.cache' / 'rlhf_tf'


def presets_dir(cache_dir=None) -> Path:
  """Where the fetched presets live (may not exist yet)."""
  base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
  return base / _FOLDER


def fetch_presets(cache_dir=None, force: bool = False) -> Path:
  """Downloads the invesalius .deb and extracts the raycasting presets.

  Raises:
    RuntimeError: apt-get / dpkg-deb missing or failing (the message says
      what to do instead).
  """
  target = presets_dir(cache_dir)
  if (target / 'Bone + Skin.plist').is_file() and not force:
    return target
  for tool in ('apt-get', 'dpkg-deb'):
    if shutil.which(tool) is None:
      raise RuntimeError(
          f'{tool} not found: fetch the InVesalius presets on '
          f'a Debian/Ubuntu machine (`apt-get download '
          f'{PACKAGE}`), copy {_PRESET_DIR} to {target}'
      )
  with tempfile.TemporaryDirectory(prefix='rlhf_tf_presets_') as tmp:
    proc = subprocess.run(
        ['apt-get', 'download', PACKAGE],
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
    )
    debs = sorted(Path(tmp).glob(f'{PACKAGE}_*.deb'))
    if proc.returncode != 0 or not debs:
      tail = '\n'.join((proc.stderr + proc.stdout).strip().splitlines()[-3:])
      raise RuntimeError(
          f'`apt-get download {PACKAGE}` failed (try '
          f'`apt-get update` first):\n{tail}'
      )
    staged = Path(tmp) / 'presets'
    with subprocess.Popen(
        ['dpkg-deb', '--fsys-tarfile', str(debs[-1])], stdout=subprocess.PIPE
    ) as pipe:
      with tarfile.open(fileobj=pipe.stdout, mode='r|') as tar:
        for info in tar:
          name = info.name.lstrip('./')
          if (
              info.isfile()
              and name.startswith(_PRESET_DIR)
              and name.endswith('.plist')
          ):
            out = staged / name[len(_PRESET_DIR) :]
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, 'wb') as f:
              shutil.copyfileobj(tar.extractfile(info), f)
      pipe.stdout.read()
    if not (staged / 'Bone + Skin.plist').is_file():
      raise RuntimeError(
          f'{debs[-1].name} holds no raycasting presets under '
          f'{_PRESET_DIR}; the package layout changed'
      )
    if target.exists():
      shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(staged), str(target))
  return target


def list_presets(folder=None) -> list[Path]:
  """The preset files (not the colour lists), sorted by name."""
  folder = Path(folder) if folder else presets_dir()
  return sorted(p for p in folder.glob('*.plist'))


def read_preset(path, volume_min_hu: float = -1024.0) -> tables.SeparableTF:
  """One InVesalius raycasting preset as a SeparableTF (module docstring).

  Args:
    path: the preset .plist (its colour list is looked up next to it in
      color_list/).
    volume_min_hu: the scan's minimum HU (InVesalius shifts the scalars by
      it; it places the far zero point of the opacity).
  """
  path = Path(path)
  try:
    with open(path, 'rb') as f:
      p = plistlib.load(f)
  except (plistlib.InvalidFileException, OSError, ValueError) as e:
    raise ValueError(f'{path}: not a readable .plist ({e})') from e
  far = float(volume_min_hu) + _SHIFTED_MAX
  try:
    if p.get('advancedCLUT'):
      rows, colours = [], []
      for curve, cols in zip(p['16bitClutCurves'], p['16bitClutColors']):
        for point, c in zip(curve, cols):
          rows.append((float(point['x']), float(point['y'])))
          colours.append(
              (
                  float(point['x']),
                  float(c['red']),
                  float(c['green']),
                  float(c['blue']),
              )
          )
      order = np.argsort([r[0] for r in rows], kind='stable')
      opacity = np.asarray(rows)[order]
      colour = np.asarray(colours)[order]
    else:
      ww, wl = float(p['ww']), float(p['wl'])
      lo, hi = wl - ww / 2, wl + ww / 2
      opacity = np.array([[lo, 0.0], [hi, 1.0]])
      if p['CLUT'] == 'No CLUT':
        rgb = np.repeat(np.arange(256)[:, None], 3, axis=1) / 255.0
      else:
        with open(path.parent / 'color_list' / f'{p["CLUT"]}.plist', 'rb') as f:
          c = plistlib.load(f)
        rgb = np.stack([c['Red'], c['Green'], c['Blue']], -1) / 255.0
      colour = np.concatenate([np.linspace(lo, hi, len(rgb))[:, None], rgb], -1)
  except (KeyError, TypeError, OSError) as e:
    raise ValueError(
        f'{path}: not an InVesalius raycasting preset ({e!r})'
    ) from e
  # The zero segment under the points: 0 at the volume's minimum, and the
  # linear fall from the last point to 0 at min + 65535.
  start = np.array([[float(volume_min_hu), 0.0]])
  end = np.array([[far, 0.0]])
  opacity = np.concatenate(
      [start[opacity[:1, 0] > start[:, 0]], opacity, end], 0
  )
  shade = bool(p.get('useShading', True))
  return tables.SeparableTF(
      scalar_opacity=np.clip(opacity, [-np.inf, 0], [np.inf, 1]),
      gradient_opacity=np.array([[0.0, 1.0]]),
      color=np.clip(colour, [-np.inf, 0, 0, 0], [np.inf, 1, 1, 1]),
      unit_distance_mm=1.0,
      shading=tables.Shading(shade=shade),
      name=f'InVesalius {p.get("name", path.stem)}',
  )


def preset_group(path) -> str:
  """The preset's InVesalius group ('Bone CT', 'Soft Tissue CT', ...)."""
  with open(path, 'rb') as f:
    return str(plistlib.load(f).get('groupName', ''))


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m rlhf_tf.export.invesalius_presets',
      description='Fetch the InVesalius raycasting presets into the cache.',
  )
  parser.add_argument('--cache-dir', default=None)
  parser.add_argument('--force', action='store_true')
  args = parser.parse_args(argv)
  try:
    print(fetch_presets(args.cache_dir, args.force))
  except RuntimeError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
