"""The pages and downloads of the preference UI.

GET  /                          the voting page
GET  /results, /api/results     votes per inspector, tie rate, agreement
GET  /export.jsonl              the whole store as JSONL (download)
GET  /healthz
"""

from __future__ import annotations

import os
from pathlib import Path
import tempfile

import flask

from rlhf_tf.ui import app_state, sign_in
from rlhf_tf.ui import results as results_lib

blueprint = flask.Blueprint('pages', __name__)


@blueprint.route('/')
def index():
  state = app_state.current()
  return flask.render_template(
      'index.html',
      votes_target=state.votes_target,
      has_jh=state.jh_png is not None,
      lease_seconds=state.dispenser.leases.lease_seconds,
      inspector=sign_in.signed_in(state),
      presets=[n for n, _ in state.presets],
      views=len(state.views),
  )


def _summary(state: app_state.AppState) -> dict:
  return results_lib.summary(
      state.store(), state.scene_ids, state.views[0].azimuth_deg
  )


@blueprint.route('/results')
def results():
  state = app_state.current()
  return flask.render_template(
      'results.html',
      r=_summary(state),
      turns=len(state.views) > 1,
      scenes=state.scene_ids,
  )


@blueprint.route('/api/results')
def api_results():
  return _summary(app_state.current())


@blueprint.route('/export.jsonl')
def export():
  fd, tmp = tempfile.mkstemp(suffix='.jsonl')
  os.close(fd)
  try:
    app_state.current().store().export_jsonl(tmp)
    data = Path(tmp).read_bytes()
  finally:
    os.unlink(tmp)
  response = flask.make_response(data)
  response.headers['Content-Type'] = 'application/x-ndjson'
  response.headers['Content-Disposition'] = (
      'attachment; filename="preferences.jsonl"'
  )
  return response


@blueprint.route('/healthz')
def healthz():
  return dict(ok=True)
