"""What a client sends the preference UI, checked: the JSON body, ids and
vote ids, each refused with an ``ApiError`` that names the field.

``app.create_app`` turns every ``ApiError`` into ``{"error": message}``
with its status. Ids are SQLite INTEGERs: beyond 2^63 - 1 a body's id is
400 and a URL's id cannot exist (404).
"""

from __future__ import annotations

import re
from typing import Optional

import flask

VOTE_ID = re.compile(r'^[A-Za-z0-9_-]{8,64}$')
MAX_ID = 2**63 - 1  # SQLite INTEGER


class ApiError(Exception):
  """A request the app refuses: status code and a message for the client."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


def json_body() -> dict:
  """The request's JSON object, or 400."""
  data = flask.request.get_json(silent=True, force=True)
  if not isinstance(data, dict):
    raise ApiError(400, 'the request body must be a JSON object')
  return data


def int_field(data: dict, key: str) -> int:
  value = data.get(key)
  if isinstance(value, bool) or not isinstance(value, int) or value < 0:
    raise ApiError(
        400,
        f'{key} must be a non-negative integer; got ' f'{str(value)[:40]!r}',
    )
  if value > MAX_ID:
    raise ApiError(400, f'{key} is out of range (at most 2^63 - 1)')
  return value


def vote_id_of(data: dict, required: bool = True) -> Optional[str]:
  value = data.get('vote_id')
  if value is None and not required:
    return None
  if not isinstance(value, str) or not VOTE_ID.match(value):
    raise ApiError(
        400,
        'vote_id must be 8-64 characters [A-Za-z0-9_-] '
        '(a random id the client makes per vote)',
    )
  return value


def url_id(value: int, what: str) -> int:
  """An id from a URL: beyond SQLite's range it cannot exist (404)."""
  if value > MAX_ID:
    raise ApiError(404, f'unknown {what}')
  return value
