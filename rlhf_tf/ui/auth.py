"""Who is voting: per-inspector links signed with the study's secret.

The operator names the inspectors (``collect``'s ``config.inspectors``) and
the collect job prints one personal link per inspector,
``http://host:port/login?key=<token>``. The token is the inspector's name
signed with the study's secret (itsdangerous, HMAC-SHA1 by default), so the
server keeps no password table and a link cannot be forged or edited into
another name. Opening the link stores the name in Flask's signed session
cookie (HttpOnly, SameSite=Strict); every write -- asking for a pair, voting,
undoing -- needs that session, or the token as ``Authorization: Bearer
<token>`` for scripts, and acts as that inspector only. Removing a name
from the roster revokes its link; a new secret file revokes all links.

Leases are signed the same way: ``/api/next`` hands out a lease token naming
(inspector, scene, pair, shown order, shown time), and a vote must carry a
lease of the voter on that very pair. So nobody votes on a pair leased to
someone else or never leased, and the shown time comes from the server, even
after a restart (the secret persists, the in-memory lease table does not).
A lease token carries no signing time of its own: its age is the server
clock's now minus its shown time, so the same lease always signs to the same
token (asking again hands out the very token) and an injected clock (tests)
governs it whole.

The secret lives in a file next to the store (``ui_secret.key``, mode 0600),
made on first use with ``secrets.token_bytes``.
"""

from __future__ import annotations

import os
from pathlib import Path
import secrets
from typing import Iterable, NamedTuple, Optional
from urllib.parse import quote

import itsdangerous

from rlhf_tf.input_error import ConfigError

SECRET_FILE = 'ui_secret.key'
SECRET_BYTES = 32
MAX_NAME = 64
_INSPECTOR_SALT = 'rlhf_tf.ui.inspector'
_LEASE_SALT = 'rlhf_tf.ui.lease'
# A lease shown up to this far in the server clock's future is still taken
# (the clock stepped back, e.g. by NTP, between handout and vote).
_CLOCK_STEP_BACK_S = 60.0


class SignedLease(NamedTuple):
  """What a lease token certifies (unix seconds, server clock)."""

  inspector: str
  scene_id: str
  pair_id: int
  left_action: int
  right_action: int
  shown_at: float


def check_name(name) -> str:
  """An inspector name: 1-64 printable characters, no surrounding spaces."""
  if (
      not isinstance(name, str)
      or not name.strip()
      or name != name.strip()
      or len(name) > MAX_NAME
      or not name.isprintable()
  ):
    raise ConfigError(
        f'inspector name {name!r} must be 1-{MAX_NAME} '
        f'printable characters without surrounding spaces'
    )
  return name


def parse_roster(value) -> tuple[str, ...]:
  """``'inspector-1, inspector-2'`` or a sequence of names -> unique names,
  in order."""
  if isinstance(value, str):
    names = [n.strip() for n in value.split(',') if n.strip()]
  else:
    names = [str(n).strip() for n in value]
  if not names:
    raise ConfigError(
        'inspectors: name at least one inspector (e.g. '
        '--experiment.inspectors=inspector-1,inspector-2); '
        'each gets a personal link'
    )
  for name in names:
    check_name(name)
  doubles = sorted({n for n in names if names.count(n) > 1})
  if doubles:
    raise ConfigError(f'inspectors: {", ".join(doubles)} listed twice')
  return tuple(names)


def load_or_create_secret(path) -> bytes:
  """The study's secret: read from ``path``, or made there (mode 0600)."""
  path = Path(path)
  try:
    secret = path.read_bytes()
  except FileNotFoundError:
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(SECRET_BYTES)
    try:
      fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: use theirs
      return load_or_create_secret(path)
    with os.fdopen(fd, 'wb') as f:
      f.write(secret)
    return secret
  if len(secret) < 16:
    raise ConfigError(
        f'{path}: the UI secret is {len(secret)} bytes, needs '
        f'at least 16 (delete the file to make a new one; '
        f'this revokes every inspector link)'
    )
  return secret


class InspectorKeys:
  """Signs and checks inspector tokens and lease tokens for one study."""

  def __init__(self, secret: bytes, inspectors: Iterable[str]):
    if not isinstance(secret, bytes) or len(secret) < 16:
      raise ValueError('the UI secret must be at least 16 bytes')
    self.secret = secret
    self.inspectors = parse_roster(list(inspectors))
    self._names = itsdangerous.URLSafeSerializer(secret, _INSPECTOR_SALT)
    self._leases = itsdangerous.URLSafeSerializer(secret, _LEASE_SALT)

  def token(self, inspector: str) -> str:
    """The secret token of a rostered inspector (put it in their link)."""
    if inspector not in self.inspectors:
      raise KeyError(f'{inspector!r} is not an inspector of this study')
    return self._names.dumps(inspector)

  def inspector_of(self, token) -> Optional[str]:
    """The rostered inspector a token was made for, else None."""
    if not isinstance(token, str) or len(token) > 512:
      return None
    try:
      name = self._names.loads(token)
    except itsdangerous.BadData:
      return None
    return name if name in self.inspectors else None

  def link(self, base_url: str, inspector: str) -> str:
    """The personal link of an inspector, e.g. http://host:port/login?key=."""
    return (
        f'{base_url.rstrip("/")}/login?key='
        f'{quote(self.token(inspector), safe="")}'
    )

  def sign_lease(self, lease: SignedLease) -> str:
    return self._leases.dumps(list(lease))

  def lease_of(
      self, token, max_age_s: float, now: float
  ) -> Optional[SignedLease]:
    """The lease a token certifies, if genuine and shown at most max_age_s
    before now (unix seconds, server clock; or up to a minute after it)."""
    if not isinstance(token, str) or len(token) > 2048:
      return None
    try:
      fields = self._leases.loads(token)
      lease = SignedLease(
          str(fields[0]),
          str(fields[1]),
          int(fields[2]),
          int(fields[3]),
          int(fields[4]),
          float(fields[5]),
      )
    except (itsdangerous.BadData, TypeError, ValueError, IndexError):
      return None
    age = now - lease.shown_at
    return lease if -_CLOCK_STEP_BACK_S <= age <= max_age_s else None


def keys_for_store(store_path, inspectors) -> InspectorKeys:
  """Keys with the secret kept next to a preference store file."""
  secret = load_or_create_secret(Path(store_path).parent / SECRET_FILE)
  return InspectorKeys(secret, parse_roster(inspectors))
