"""Fetches the real head CT "Cranium" (InVesalius example project).

The data ships in the Debian package ``invesalius-examples`` as
``/usr/share/doc/invesalius-examples/examples/Cranium.inv3`` (108 x 256 x 256
int16 HU, 0.957 x 0.957 x 1.5 mm). It is GPL-licensed, so it is cached OUTSIDE
the repository and never committed:

  python -m rlhf_tf.data.sample_fetch          # prints the cached path

Cache folder: ``$RLHF_TF_DATA`` if set, else ``~/.cache/rlhf_tf``. The fetch
uses ``apt-get download`` (no installation, no root needed when the package
lists are current) and ``dpkg-deb`` to pull the single file out of the .deb.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import shutil
import subprocess
import sys
import tarfile
import tempfile
from typing import Optional

import numpy as np

from rlhf_tf.data.invesalius import read_inv3
from rlhf_tf.data.volume import Volume

PACKAGE = 'invesalius-examples'
FILENAME = 'Cranium.inv3'
FETCH_COMMAND = 'python -m rlhf_tf.data.sample_fetch'
CRANIUM_SHAPE = (108, 256, 256)
CRANIUM_SPACING_ZYX = (1.5, 0.957, 0.957)
# apt-get messages meaning "the package lists do not know this package yet".
_UNKNOWN_PACKAGE = (
    'Unable to locate package',
    'has no installation candidate',
    "Can't select candidate version",
    'No packages found',
)
_REPO_ROOT = Path(__file__).resolve().parents[2]


class FetchError(RuntimeError):
  """The sample could not be fetched; the message says what to do instead."""


def default_cache_dir() -> Path:
  """``$RLHF_TF_DATA`` if set, else ``~/.cache/rlhf_tf`` (outside the repo)."""
  env = os.environ.get('RLHF_TF_DATA')
  return Path(env).expanduser() if env else Path.home() / '.cache' / 'rlhf_tf'


def cranium_path(cache_dir=None) -> Path:
  """Where the cached ``Cranium.inv3`` lives (it may not exist yet)."""
  base = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
  return base / FILENAME


def _manual_instructions(target: Path) -> str:
  """What a user without apt can do instead; shared by every fetch error."""
  return (
      f'Alternatives: on a Debian/Ubuntu machine run `{FETCH_COMMAND}` '
      f'(or `apt-get download {PACKAGE}` and take {FILENAME} from '
      f'usr/share/doc/{PACKAGE}/examples/ inside the .deb); or download '
      f'{FILENAME} by hand and place it at {target}; or set RLHF_TF_DATA '
      f'to a folder that already holds {FILENAME}.'
  )


def _refuse_repo_dir(target: Path) -> None:
  """The data is GPL: never let it land inside the source checkout."""
  resolved = target.resolve()
  if resolved == _REPO_ROOT or _REPO_ROOT in resolved.parents:
    raise FetchError(
        f'refusing to store {FILENAME} inside the repository '
        f'({target}); the data is GPL and must not be committed. '
        f'Choose a cache dir outside {_REPO_ROOT}.'
    )


def _require_tools(target: Path) -> None:
  """Checks apt-get and dpkg-deb exist before doing anything."""
  missing = [t for t in ('apt-get', 'dpkg-deb') if shutil.which(t) is None]
  if missing:
    raise FetchError(
        f'cannot fetch {FILENAME}: {" and ".join(missing)} not '
        f'found (this is not a Debian-based system). '
        f'{_manual_instructions(target)}'
    )


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
  """Runs a command, capturing text output, never raising on failure."""
  return subprocess.run(
      cmd, cwd=cwd, capture_output=True, text=True, check=False
  )


def _tail(proc: subprocess.CompletedProcess) -> str:
  """The last lines of a failed command's output, for error messages."""
  text = (proc.stderr or '') + (proc.stdout or '')
  return '\n'.join(text.strip().splitlines()[-5:])


def _download_deb(workdir: Path, target: Path) -> Path:
  """``apt-get download`` into workdir, refreshing lists once if needed."""
  proc = _run(['apt-get', 'download', PACKAGE], workdir)
  if proc.returncode != 0 and any(m in proc.stderr for m in _UNKNOWN_PACKAGE):
    # Fresh containers ship without package lists; as non-root this update
    # fails, which the error below then reports.
    update = _run(['apt-get', 'update'], workdir)
    if update.returncode != 0:
      who = 'not root' if os.geteuid() != 0 else 'root'
      raise FetchError(
          f'apt-get does not know {PACKAGE} and `apt-get update` '
          f'failed (running as {who}; try `sudo apt-get update` '
          f'first):\n{_tail(update)}\n'
          f'{_manual_instructions(target)}'
      )
    proc = _run(['apt-get', 'download', PACKAGE], workdir)
  if proc.returncode != 0:
    raise FetchError(
        f'`apt-get download {PACKAGE}` failed:\n{_tail(proc)}\n'
        f'{_manual_instructions(target)}'
    )
  debs = sorted(workdir.glob(f'{PACKAGE}_*.deb'))
  if not debs:
    raise FetchError(
        f'`apt-get download {PACKAGE}` succeeded but left no '
        f'.deb in {workdir}'
    )
  return debs[-1]


def _extract_member(deb: Path, out: Path) -> None:
  """Streams the .deb's data tar through dpkg-deb, keeping only the Cranium."""
  found = False
  with subprocess.Popen(
      ['dpkg-deb', '--fsys-tarfile', str(deb)],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
  ) as proc:
    try:
      with tarfile.open(fileobj=proc.stdout, mode='r|') as tar:
        for info in tar:
          if info.isfile() and os.path.basename(info.name) == FILENAME:
            with open(out, 'wb') as f:
              shutil.copyfileobj(tar.extractfile(info), f)
            found = True
            break
    except tarfile.TarError as e:
      tar_error = f' ({e})'
    else:
      tar_error = ''
    # Drain the pipe so dpkg-deb can exit after an early break.
    proc.stdout.read()
    stderr = proc.stderr.read().decode(errors='replace').strip()
  if not found and (proc.returncode != 0 or tar_error):
    raise FetchError(
        f'`dpkg-deb --fsys-tarfile {deb}` failed{tar_error}: ' f'{stderr}'
    )
  if not found:
    raise FetchError(
        f'{deb.name} holds no {FILENAME}; the package layout ' f'changed'
    )


def verify_cranium(path) -> Volume:
  """Reads ``path`` and checks it is the expected Cranium; returns it."""
  try:
    volume = read_inv3(path, name='Cranium')
  except ValueError as e:
    raise FetchError(f'the fetched file is not a readable project: {e}') from e
  if volume.shape != CRANIUM_SHAPE or not np.allclose(
      np.asarray(volume.spacing), CRANIUM_SPACING_ZYX, atol=1e-3
  ):
    raise FetchError(
        f'{path}: expected shape {CRANIUM_SHAPE} and spacing '
        f'{CRANIUM_SPACING_ZYX} mm, got {volume.shape} and '
        f'{np.round(np.asarray(volume.spacing), 4).tolist()}'
    )
  return volume


def fetch_cranium(cache_dir=None, force: bool = False) -> Path:
  """Downloads, verifies and caches ``Cranium.inv3``; returns its path.

  Does nothing when the file is already cached (unless ``force``).

  Raises:
    FetchError: apt-get/dpkg-deb missing (with manual alternatives), the
      download or extraction failed, the target is inside the repository, or
      the extracted file is not the expected Cranium.
  """
  target = cranium_path(cache_dir)
  if target.is_file() and not force:
    return target
  _refuse_repo_dir(target)
  _require_tools(target)
  target.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix='rlhf_tf_fetch_') as tmp:
    workdir = Path(tmp)
    deb = _download_deb(workdir, target)
    staged = workdir / FILENAME
    _extract_member(deb, staged)
    verify_cranium(staged)
    # Copy next to the target, then rename: a crash never leaves half a file.
    partial = target.with_name(target.name + '.partial')
    shutil.copyfile(staged, partial)
    os.replace(partial, target)
  return target


def load_cranium(cache_dir=None) -> Volume:
  """The cached Cranium as a Volume (with its two masks as labels).

  Raises:
    FileNotFoundError: not fetched yet; the message gives the fetch command.
  """
  path = cranium_path(cache_dir)
  if not path.is_file():
    raise FileNotFoundError(
        f'{path} not found: run `{FETCH_COMMAND}` to '
        f'fetch it (Debian/Ubuntu), or place '
        f'{FILENAME} there by hand / set RLHF_TF_DATA.'
    )
  return read_inv3(path, name='Cranium')


def main(argv: Optional[list[str]] = None) -> int:
  """CLI: fetch (if needed) and print the cached path; 1 on failure."""
  parser = argparse.ArgumentParser(
      prog='python -m rlhf_tf.data.sample_fetch',
      description=f'Fetch the InVesalius "{FILENAME}" head CT from the Debian '
      f'package {PACKAGE} into the cache ($RLHF_TF_DATA or ~/.cache/rlhf_tf).',
  )
  parser.add_argument(
      '--cache-dir',
      default=None,
      help='cache folder (default: $RLHF_TF_DATA or ' '~/.cache/rlhf_tf)',
  )
  parser.add_argument(
      '--force',
      action='store_true',
      help='download again even if already cached',
  )
  args = parser.parse_args(argv)
  try:
    path = fetch_cranium(args.cache_dir, force=args.force)
  except FetchError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(path)
  return 0


if __name__ == '__main__':
  sys.exit(main())
