"""Who is asking: the inspector of a request, and the routes that sign in.

  GET /login?key=...   sign in (sets the session), then /
  GET /logout

Each inspector opens a personal link (``/login?key=<signed token>``,
``rlhf_tf.ui.auth``) that puts their name in a signed session cookie;
scripts may send ``Authorization: Bearer <token>`` instead. The POST routes
act as that inspector only (401 without a session, 403 for a body naming
someone else).
"""

from __future__ import annotations

from typing import Optional

import flask

from rlhf_tf.ui import app_state, auth
from rlhf_tf.ui.api_input import ApiError

MAX_INSPECTOR = auth.MAX_NAME

blueprint = flask.Blueprint('sign_in', __name__)


def signed_in(state: app_state.AppState) -> Optional[str]:
  """The inspector of this request's session or bearer token, or None."""
  header = flask.request.headers.get('Authorization', '')
  if header.startswith('Bearer '):
    return state.keys.inspector_of(header[len('Bearer ') :].strip())
  name = flask.session.get('inspector')
  # Re-checked on every request: a name taken off the roster is out.
  return name if name in state.keys.inspectors else None


def inspector(state: app_state.AppState, data: dict) -> str:
  """The signed-in inspector; a body naming someone else is refused."""
  name = signed_in(state)
  if name is None:
    raise ApiError(
        401,
        'not signed in: open your personal link (ask the '
        'study operator for it)',
    )
  claimed = data.get('inspector')
  if claimed is not None and claimed != name:
    raise ApiError(
        403,
        f'signed in as {name!r}; cannot act as '
        f'{str(claimed)[:MAX_INSPECTOR]!r}',
    )
  return name


@blueprint.route('/login')
def login():
  name = app_state.current().keys.inspector_of(flask.request.args.get('key'))
  if name is None:
    flask.session.clear()
    raise ApiError(
        403,
        'this link is not valid (any more): ask the study '
        'operator for your personal link',
    )
  flask.session.clear()
  flask.session['inspector'] = name
  flask.session.permanent = True
  return flask.redirect('/')


@blueprint.route('/logout')
def logout():
  flask.session.clear()
  return flask.redirect('/')
