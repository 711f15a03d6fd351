"""The browser preference interface: a Flask app over a ``PreferenceStore``.

  keys = auth.keys_for_store(store_path, ['inspector-1', 'inspector-2'])
  app = create_app(store_path, render_png, keys, scene_ids=['phantom-0'])
  serve(app, host='127.0.0.1', port=8765)   # waitress, threads
  keys.link('http://127.0.0.1:8765', 'inspector-1')  # a personal link

Who votes (``rlhf_tf.ui.auth``): each inspector opens a personal link
(``/login?key=<signed token>``) that puts their name in a signed session
cookie; scripts may send ``Authorization: Bearer <token>`` instead. The
three POST routes act as that inspector only (401 without a session, 403
for a body naming someone else). A vote needs the signed lease its
``/api/next`` handed out: no votes on pairs leased to others or never leased
(409), and one answer per inspector and pair until it is undone (409).

Routes (all JSON errors are ``{"error": message}`` with a 4xx/5xx status;
ids beyond 2^63 - 1 are 400/404, and a 500 never shows exception text):
  GET  /login?key=...             sign in (sets the session), then /
  GET  /logout
  GET  /                          the voting page
  GET  /results, /api/results     votes per inspector, tie rate, agreement
  GET  /export.jsonl              the whole store as JSONL (download)
  POST /api/next   {}             the pair to show (leased) and progress
  POST /api/vote   {lease, scene_id, pair_id, left_action, right_action,
                    choice, vote_id}  -> {event_id, ...}
  POST /api/undo   {[vote_id]}    -> {event_id, pair, ...}
  GET  /render/<scene>/<action>.png[?view=k]  the rendering (render_png,
                                  cached), at view k (default 0)
  GET  /jh/<scene>/<left>/<right>.png the JH with both polygons (jh_png)
  GET  /preset/<scene>/<index>.png[?view=k]   a reference preset's rendering
  GET  /healthz

Turning the pair (``views``: e.g. 12 azimuths of the orbit camera, wired by
jobs/collect.py): the page shows both renderings at the same view, always,
and turns them together (keys , and . or a horizontal drag); a turn shows
once both sides (and a shown preset) of the new view have loaded, so the two
sides never show different views. The page preloads the other views of the
pair, nearest first. A vote names the view shown (``view``, default 0), and
the store records its azimuth and render key with the vote. The arrow keys
stay the vote keys (left / right / down = equal).

Reference presets (``presets``: InVesalius .plist, a user's Slicer .vp.json,
wired by jobs/collect.py): an inspector who knows the presets of their
viewer can show one of them, rendered on the pair's scene with the same view
and lighting, in a panel beside the pair. It is a reference only: the votes
stay on the pair (the reward model scores polygons, and a preset is a TF
table, not a polygon).

State: every vote and undo goes to the store at once (one transaction), so a
restarted app resumes each inspector where they were. Only the leases live in
memory (see ``rlhf_tf.ui.pairs``).

Idempotent retries: the client names each vote with a random ``vote_id``,
stored as the vote's ``session``. Under a process-wide lock the app looks the
id up before recording, so a vote retried after a lost answer is stored once
and answered with the original event id. This is exact for one server
process; several processes on one store would need a unique index in the
store. ``/api/undo`` with ``vote_id`` withdraws exactly that
vote and is idempotent the same way.

SQLite connections belong to the thread that opened them, so each server
thread opens its own ``PreferenceStore`` on the same file (WAL).
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
import re
import tempfile
import threading
import time
from typing import Callable, NamedTuple, Optional, Sequence

from absl import logging
import flask
from werkzeug import exceptions

from rlhf_tf.preferences import store as store_lib
from rlhf_tf.ui import auth
from rlhf_tf.ui import pairs as pairs_lib
from rlhf_tf.ui import results as results_lib

PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
MAX_VIEWS = 360
VIEW_ARG = re.compile(r'^[0-9]{1,3}$')
VOTE_ID = re.compile(r'^[A-Za-z0-9_-]{8,64}$')
MAX_INSPECTOR = auth.MAX_NAME
MAX_LEASE_AGE_S = 24 * 3600.0  # a vote on a pair shown longer ago is refused
MAX_ID = 2**63 - 1  # SQLite INTEGER
JH_CACHE_SIZE = 512
LOOPBACK = ('127.0.0.1', 'localhost', '::1')


class View(NamedTuple):
  """One view the pair can be turned to (the same on both sides)."""

  azimuth_deg: Optional[float]  # orbit azimuth (rlhf_tf.render.camera)
  render_key: str  # names this view's renderings in the image cache


class ApiError(Exception):
  """A request the app refuses: status code and a message for the client."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status = status
    self.message = message


# ------------------------------------------------------------ validation


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


# ------------------------------------------------------------ the app


class PreferenceApp:
  """Routes and their state (dispenser, locks, caches) for one process."""

  def __init__(
      self,
      store_path,
      render_png: Callable[[str, int], bytes],
      keys: auth.InspectorKeys,
      scene_ids: Optional[Sequence[str]],
      render_key: str,
      jh_png: Optional[Callable],
      votes_target: int,
      dispenser_kwargs: dict,
      presets=(),
      views: Sequence[View] = (),
  ):
    if not isinstance(keys, auth.InspectorKeys):
      raise TypeError(
          'create_app needs keys=auth.InspectorKeys(...): every '
          'inspector signs in with a personal link'
      )
    self.keys = keys
    self.store_path = Path(store_path)
    self.render_png = render_png
    # views=(): one view, callbacks without a view argument (see create_app).
    self.turns = bool(views)
    self.views = tuple(View(*v) for v in views) or (View(None, render_key),)
    if len(self.views) > MAX_VIEWS or len(
        {v.render_key for v in self.views}
    ) != len(self.views):
      raise ValueError(
          f'views must be 1..{MAX_VIEWS} with distinct render keys; got '
          f'{[v.render_key for v in self.views]}'
      )
    self.jh_png = jh_png
    self.votes_target = int(votes_target)
    self._local = threading.local()
    known = [s['scene_id'] for s in self.store().scenes()]
    scene_ids = list(scene_ids) if scene_ids else known
    unknown = sorted(set(scene_ids) - set(known))
    if not scene_ids or unknown:
      raise ValueError(
          f'scenes {unknown or scene_ids} are not in the store '
          f'{self.store_path} (it has {known})'
      )
    self.scene_ids = tuple(scene_ids)
    self.dispenser = pairs_lib.Dispenser(self.scene_ids, **dispenser_kwargs)
    self.clock = self.dispenser.leases.clock
    self.vote_lock = threading.Lock()
    self.render_locks = collections.defaultdict(threading.Lock)
    self.jh_cache: collections.OrderedDict = collections.OrderedDict()
    self.jh_lock = threading.Lock()
    self.presets = tuple((str(name), fn) for name, fn in presets)
    self.preset_cache: dict = {}  # (scene, index, view) -> PNG; few of them

  def store(self) -> store_lib.PreferenceStore:
    """This thread's store (SQLite connections are per thread)."""
    s = getattr(self._local, 'store', None)
    if s is None:
      s = self._local.store = store_lib.PreferenceStore(self.store_path)
    return s

  # -------------------------------------------------------- who

  def signed_in(self) -> Optional[str]:
    """The inspector of this request's session or bearer token, or None."""
    header = flask.request.headers.get('Authorization', '')
    if header.startswith('Bearer '):
      return self.keys.inspector_of(header[len('Bearer ') :].strip())
    name = flask.session.get('inspector')
    # Re-checked on every request: a name taken off the roster is out.
    return name if name in self.keys.inspectors else None

  def inspector(self, data: dict) -> str:
    """The signed-in inspector; a body naming someone else is refused."""
    name = self.signed_in()
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

  def login(self):
    name = self.keys.inspector_of(flask.request.args.get('key'))
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

  def logout(self):
    flask.session.clear()
    return flask.redirect('/')

  # -------------------------------------------------------- lookups

  def view_arg(self) -> int:
    """The ?view= of an image URL (default 0, the first view), or 404."""
    text = flask.request.args.get('view', '0')
    if not VIEW_ARG.match(text) or int(text) >= len(self.views):
      raise ApiError(
          404, f'unknown view {text[:20]!r} (this app has {len(self.views)})'
      )
    return int(text)

  def view_of_vote(self, data: dict) -> int:
    """The view a vote was cast at (body field ``view``, default 0)."""
    if data.get('view') is None:
      return 0
    view = int_field(data, 'view')
    if view >= len(self.views):
      raise ApiError(
          400, f'view must be below {len(self.views)} (the views of this app)'
      )
    return view

  def view_urls(self, path: str) -> list[str]:
    """``path`` at every view (view 0 without a query: today's URLs)."""
    return [path] + [f'{path}?view={k}' for k in range(1, len(self.views))]

  def scene(self, scene_id) -> str:
    if not isinstance(scene_id, str) or scene_id not in self.scene_ids:
      raise ApiError(404, f'unknown scene {scene_id!r}')
    return scene_id

  def pair_actions(self, scene_id: str, pair_id: int) -> tuple[int, int]:
    row = (
        self.store()
        .conn.execute(
            'SELECT action_a, action_b FROM pairs WHERE scene_id = ? AND '
            'pair_id = ?',
            (scene_id, pair_id),
        )
        .fetchone()
    )
    if row is None:
      raise ApiError(404, f'unknown pair {pair_id} in scene {scene_id!r}')
    return tuple(row)

  def progress(self, inspector: str, remaining: Optional[int] = None) -> dict:
    store = self.store()
    mine = store.effective_votes(inspector=inspector)
    return dict(
        votes=sum(v.scene_id in self.scene_ids for v in mine),
        target=self.votes_target,
        remaining=remaining,
        total_votes=sum(
            store.vote_counts(s)['effective'] for s in self.scene_ids
        ),
    )

  def undo_hint(self, inspector: str) -> Optional[str]:
    """The vote_id of the inspector's latest vote an undo would withdraw."""
    row = (
        self.store()
        .conn.execute(
            "SELECT v.session FROM votes v WHERE v.kind = 'vote' AND "
            'v.inspector = ? AND NOT EXISTS (SELECT 1 FROM votes u WHERE '
            'u.undoes_event_id = v.event_id) ORDER BY v.event_id DESC LIMIT 1',
            (inspector,),
        )
        .fetchone()
    )
    return None if row is None else (row[0] or '')

  def handout(self, lease: Optional[pairs_lib.Lease]) -> Optional[dict]:
    """What the page needs to show a leased pair, with its signed lease."""
    if lease is None:
      return None
    s, l, r = lease.scene_id, lease.left_action, lease.right_action
    signed = self.keys.sign_lease(
        auth.SignedLease(
            lease.inspector, s, lease.pair_id, l, r, lease.shown_at
        )
    )
    left_urls = self.view_urls(f'/render/{s}/{l}.png')
    right_urls = self.view_urls(f'/render/{s}/{r}.png')
    return dict(
        scene_id=s,
        pair_id=lease.pair_id,
        left_action=l,
        right_action=r,
        shown_at=lease.shown_at,
        lease_expires=lease.expires_at,
        lease=signed,
        left_url=left_urls[0],
        right_url=right_urls[0],
        jh_url=f'/jh/{s}/{l}/{r}.png' if self.jh_png else None,
        # view k: azimuth (degrees or None) and both sides' images
        views=[
            dict(azimuth=v.azimuth_deg, left_url=a, right_url=b)
            for v, a, b in zip(self.views, left_urls, right_urls)
        ],
    )

  # -------------------------------------------------------- API

  def api_next(self):
    inspector = self.inspector(json_body())
    lease, remaining = self.dispenser.next_pair(self.store(), inspector)
    return dict(
        pair=self.handout(lease),
        done=lease is None,
        progress=self.progress(inspector, remaining),
        undo_vote_id=self.undo_hint(inspector),
    )

  def api_vote(self):
    data = json_body()
    inspector = self.inspector(data)
    scene_id = self.scene(data.get('scene_id'))
    pair_id = int_field(data, 'pair_id')
    left, right = int_field(data, 'left_action'), int_field(
        data, 'right_action'
    )
    choice = data.get('choice')
    if choice not in store_lib.CHOICES:
      raise ApiError(
          400,
          'choice must be one of '
          f'{", ".join(store_lib.CHOICES)}; got {choice!r}',
      )
    vote_id = vote_id_of(data)
    view = self.view_of_vote(data)
    pair = self.pair_actions(scene_id, pair_id)
    if tuple(sorted((left, right))) != pair or left == right:
      raise ApiError(
          400,
          f'left/right actions ({left}, {right}) are not the '
          f'actions {pair} of pair {pair_id}',
      )
    now = self.clock()
    event_id, duplicate = self.record_vote(
        scene_id,
        pair_id,
        left,
        right,
        choice,
        inspector,
        vote_id,
        data.get('lease'),
        now,
        self.views[view],
    )
    self.dispenser.leases.release(inspector, scene_id, pair_id)
    return dict(
        event_id=event_id,
        duplicate=duplicate,
        progress=self.progress(inspector),
        undo_vote_id=self.undo_hint(inspector),
    )

  def leased_shown_at(
      self, token, inspector, scene_id, pair_id, left, right
  ) -> float:
    """When the pair was shown, from the voter's signed lease on it."""
    lease = self.keys.lease_of(token, MAX_LEASE_AGE_S)
    if lease is None:
      raise ApiError(
          409,
          f'no valid lease on pair {pair_id}: vote on the '
          'pair the page was handed (ask /api/next for one)',
      )
    if lease.inspector != inspector:
      raise ApiError(403, f'pair {pair_id} was handed to another inspector')
    if (lease.scene_id, lease.pair_id) != (scene_id, pair_id):
      raise ApiError(
          409,
          f'the lease is for pair {lease.pair_id} of scene '
          f'{lease.scene_id!r}, not pair {pair_id}',
      )
    if (lease.left_action, lease.right_action) != (left, right):
      raise ApiError(
          409,
          f'shown order ({left}, {right}) differs from the '
          f'order handed out ({lease.left_action}, '
          f'{lease.right_action})',
      )
    return lease.shown_at

  def record_vote(
      self,
      scene_id,
      pair_id,
      left,
      right,
      choice,
      inspector,
      vote_id,
      lease_token,
      answered_at,
      view: View,
  ) -> tuple[int, bool]:
    """(event id, was it a retry) -- one vote per vote_id (see docstring),
    on a pair leased to the voter, one answer per inspector and pair."""
    store = self.store()
    with self.vote_lock:
      row = store.conn.execute(
          'SELECT event_id, scene_id, pair_id, left_action, right_action, '
          "choice, render_key FROM votes WHERE kind = 'vote' AND "
          'inspector = ? AND session = ?',
          (inspector, vote_id),
      ).fetchone()
      if row is not None:
        if tuple(row[1:]) != (
            scene_id,
            pair_id,
            left,
            right,
            choice,
            view.render_key,
        ):
          raise ApiError(
              409, f'vote_id {vote_id!r} was already used for ' 'another vote'
          )
        return row[0], True
      shown_at = self.leased_shown_at(
          lease_token, inspector, scene_id, pair_id, left, right
      )
      answered = store.current_answer(inspector, scene_id, pair_id)
      if answered is not None:
        raise ApiError(
            409,
            f'you already answered pair {pair_id} '
            f'({answered.choice}); undo that answer to change it',
        )
      try:
        return (
            store.record_vote(
                scene_id,
                pair_id,
                left,
                right,
                choice,
                inspector,
                session=vote_id,
                shown_at=shown_at,
                answered_at=answered_at,
                view_azimuth=view.azimuth_deg,
                render_key=view.render_key,
            ),
            False,
        )
      except store_lib.VoteError as e:
        raise ApiError(400, str(e)) from e

  def api_undo(self):
    data = json_body()
    inspector = self.inspector(data)
    vote_id = vote_id_of(data, required=False)
    store = self.store()
    with self.vote_lock:
      row = (
          None
          if vote_id is None
          else store.conn.execute(
              "SELECT event_id FROM votes WHERE kind = 'undo' "
              'AND inspector = ? AND session = ?',
              (inspector, vote_id),
          ).fetchone()
      )
      duplicate = row is not None
      try:
        event_id = (
            row[0] if duplicate else store.record_undo(inspector, vote_id)
        )
      except store_lib.VoteError as e:
        raise ApiError(409, str(e)) from e
    undone = store.event(store.event(event_id).undoes_event_id)
    lease = None
    if undone.scene_id in self.scene_ids:
      lease = self.dispenser.give_back(
          inspector,
          undone.scene_id,
          undone.pair_id,
          undone.left_action,
          undone.right_action,
      )
    return dict(
        event_id=event_id,
        duplicate=duplicate,
        undone=dict(
            event_id=undone.event_id,
            choice=undone.choice,
            scene_id=undone.scene_id,
            pair_id=undone.pair_id,
        ),
        pair=self.handout(lease),
        progress=self.progress(inspector),
        undo_vote_id=self.undo_hint(inspector),
    )

  # -------------------------------------------------------- images

  def inside_cache(self, path: Optional[Path]) -> Path:
    """A cached file, resolved and checked to lie inside the image cache."""
    root = self.store().images_dir.resolve()
    if path is None:
      raise ApiError(404, 'not rendered')
    path = path.resolve()
    if not path.is_relative_to(root) or not path.is_file():
      raise ApiError(404, 'image not found in the cache')
    return path

  def render(self, scene_id: str, action_id: int):
    scene_id = self.scene(scene_id)
    action_id = url_id(action_id, f'action in scene {scene_id!r}')
    view = self.view_arg()
    key = self.views[view].render_key
    store = self.store()
    path = store.render_path(scene_id, action_id, key)
    if path is None:
      if not store.conn.execute(
          'SELECT 1 FROM actions WHERE scene_id = ? AND action_id = ?',
          (scene_id, action_id),
      ).fetchone():
        raise ApiError(
            404, f'unknown action {action_id} in scene ' f'{scene_id!r}'
        )
      # One render per action and view even when requests arrive at once.
      with self.render_locks[(scene_id, action_id, view)]:
        path = store.render_path(scene_id, action_id, key)
        if path is None:
          png = (
              self.render_png(scene_id, action_id, view)
              if self.turns
              else self.render_png(scene_id, action_id)
          )
          if not isinstance(png, bytes) or not png.startswith(PNG_MAGIC):
            raise ApiError(500, 'the renderer did not return PNG bytes')
          store.add_render(scene_id, action_id, key, png)
          path = store.render_path(scene_id, action_id, key)
    return flask.send_file(
        self.inside_cache(path), mimetype='image/png', max_age=3600
    )

  def jh(self, scene_id: str, left: int, right: int):
    scene_id = self.scene(scene_id)
    left, right = url_id(left, 'action'), url_id(right, 'action')
    if self.jh_png is None:
      raise ApiError(404, 'this app has no joint-histogram view')
    if self.store().pair_id(scene_id, left, right) is None or left == right:
      raise ApiError(
          404, f'({left}, {right}) is not a pair of scene ' f'{scene_id!r}'
      )
    key = (scene_id, left, right)
    with self.jh_lock:
      png = self.jh_cache.get(key)
      if png is not None:
        self.jh_cache.move_to_end(key)
    if png is None:
      png = self.jh_png(scene_id, left, right)
      with self.jh_lock:
        self.jh_cache[key] = png
        while len(self.jh_cache) > JH_CACHE_SIZE:
          self.jh_cache.popitem(last=False)
    response = flask.make_response(png)
    response.headers['Content-Type'] = 'image/png'
    response.headers['Cache-Control'] = 'max-age=3600'
    return response

  def preset(self, scene_id: str, index: int):
    """PNG of reference preset ``index`` on a scene (rendered once)."""
    scene_id = self.scene(scene_id)
    if index >= len(self.presets):
      raise ApiError(
          404, f'unknown preset {index} (this app has ' f'{len(self.presets)})'
      )
    view = self.view_arg()
    key = (scene_id, index, view)
    with self.render_locks[('preset',) + key]:
      png = self.preset_cache.get(key)
      if png is None:
        fn = self.presets[index][1]
        png = fn(scene_id, view) if self.turns else fn(scene_id)
        if not isinstance(png, bytes) or not png.startswith(PNG_MAGIC):
          raise ApiError(500, 'the preset renderer did not return PNG bytes')
        self.preset_cache[key] = png
    response = flask.make_response(png)
    response.headers['Content-Type'] = 'image/png'
    response.headers['Cache-Control'] = 'max-age=3600'
    return response

  # -------------------------------------------------------- results

  def export(self):
    fd, tmp = tempfile.mkstemp(suffix='.jsonl')
    os.close(fd)
    try:
      self.store().export_jsonl(tmp)
      data = Path(tmp).read_bytes()
    finally:
      os.unlink(tmp)
    response = flask.make_response(data)
    response.headers['Content-Type'] = 'application/x-ndjson'
    response.headers['Content-Disposition'] = (
        'attachment; filename="preferences.jsonl"'
    )
    return response


def _register(app: flask.Flask, ui: PreferenceApp):
  """URL rules; every handler's ApiError becomes a JSON error."""
  app.add_url_rule(
      '/',
      'index',
      lambda: flask.render_template(
          'index.html',
          votes_target=ui.votes_target,
          has_jh=ui.jh_png is not None,
          lease_seconds=ui.dispenser.leases.lease_seconds,
          inspector=ui.signed_in(),
          presets=[n for n, _ in ui.presets],
          views=len(ui.views),
      ),
  )
  app.add_url_rule('/login', 'login', ui.login)
  app.add_url_rule('/logout', 'logout', ui.logout)
  app.add_url_rule(
      '/results',
      'results',
      lambda: flask.render_template(
          'results.html',
          r=results_lib.summary(
              ui.store(), ui.scene_ids, ui.views[0].azimuth_deg
          ),
          turns=len(ui.views) > 1,
          scenes=ui.scene_ids,
      ),
  )
  app.add_url_rule(
      '/api/results',
      'api_results',
      lambda: results_lib.summary(
          ui.store(), ui.scene_ids, ui.views[0].azimuth_deg
      ),
  )
  app.add_url_rule('/export.jsonl', 'export', ui.export)
  app.add_url_rule('/api/next', 'next', ui.api_next, methods=['POST'])
  app.add_url_rule('/api/vote', 'vote', ui.api_vote, methods=['POST'])
  app.add_url_rule('/api/undo', 'undo', ui.api_undo, methods=['POST'])
  app.add_url_rule(
      '/render/<scene_id>/<int:action_id>.png', 'render', ui.render
  )
  app.add_url_rule('/jh/<scene_id>/<int:left>/<int:right>.png', 'jh', ui.jh)
  app.add_url_rule('/preset/<scene_id>/<int:index>.png', 'preset', ui.preset)
  app.add_url_rule('/healthz', 'healthz', lambda: dict(ok=True))

  @app.errorhandler(ApiError)
  def _api_error(e):
    return dict(error=e.message), e.status

  @app.errorhandler(exceptions.HTTPException)
  def _http_error(e):
    return dict(error=e.description or e.name), e.code

  @app.errorhandler(Exception)
  def _crash(e):
    # The details go to the server log only: exception text can leak paths,
    # SQL or data to a client.
    logging.exception('request failed: %s', e)
    return dict(error='internal error (details are in the server log)'), 500


def create_app(
    store_path,
    render_png: Callable[[str, int], bytes],
    keys: auth.InspectorKeys,
    scene_ids: Optional[Sequence[str]] = None,
    render_key: str = 'default',
    jh_png: Optional[Callable[[str, int, int], bytes]] = None,
    votes_target: int = 200,
    lease_seconds: float = 120.0,
    overlap: float = 0.0,
    seed: int = 0,
    selection: str = 'random',
    ensemble_rewards: Optional[Callable] = None,
    clock: Callable[[], float] = time.time,
    presets: Sequence[tuple[str, Callable[[str], bytes]]] = (),
    views: Sequence[View] = (),
) -> flask.Flask:
  """The Flask app (see the module docstring).

  Args:
    store_path: the preference store (SQLite file); it must hold the scenes.
    render_png: (scene_id, action_id) -> PNG bytes, called once per action
      and render_key; the bytes are cached in the store's image cache.
    keys: the inspectors and the study secret (``auth.keys_for_store``).
    scene_ids: scenes whose pairs are handed out (default: all in the store).
    render_key: names the render settings (a new key = new renderings).
    jh_png: (scene_id, left_action, right_action) -> PNG of the JH with both
      polygons (left, right), or None to hide the JH toggle.
    votes_target: votes per inspector the progress bar counts towards.
    lease_seconds, overlap, seed, selection, ensemble_rewards: pair handout,
      see ``rlhf_tf.ui.pairs``. clock: unix seconds (injectable for tests).
    presets: (name, scene_id -> PNG bytes) of reference presets the page
      offers beside the pair (module docstring); () hides the choice.
    views: the views the page turns the pair through (``View``: azimuth in
      degrees, render key), view 0 shown first. Given, they replace
      render_key, and the callbacks take the view index as a last argument:
      render_png(scene_id, action_id, view), preset(scene_id, view). ()
      means one view under render_key, callbacks without a view argument.
  """
  ui = PreferenceApp(
      store_path,
      render_png,
      keys,
      scene_ids,
      render_key,
      jh_png,
      votes_target,
      dict(
          lease_seconds=lease_seconds,
          overlap=overlap,
          seed=seed,
          selection=selection,
          ensemble_rewards=ensemble_rewards,
          clock=clock,
      ),
      presets,
      views,
  )
  app = flask.Flask(__name__)
  app.config['MAX_CONTENT_LENGTH'] = 64 * 1024  # votes are tiny
  app.secret_key = keys.secret  # signs the session cookie (itsdangerous)
  app.config.update(
      SESSION_COOKIE_NAME='rlhf_tf_session',
      SESSION_COOKIE_HTTPONLY=True,
      SESSION_COOKIE_SAMESITE='Strict',
  )
  app.json.sort_keys = False
  app.extensions['rlhf_tf_ui'] = ui
  _register(app, ui)
  return app


def check_bind(app: flask.Flask, host: str) -> None:
  """Refuses to listen beyond this machine for an app without inspector
  keys (anyone reaching it could vote as anyone)."""
  ui = app.extensions.get('rlhf_tf_ui')
  if host not in LOOPBACK and (ui is None or not ui.keys.inspectors):
    raise ValueError(
        f'refusing to serve on {host!r} without inspector keys: '
        f'bind to 127.0.0.1, or give every inspector a link'
    )


def serve(
    app: flask.Flask,
    host: str = '127.0.0.1',
    port: int = 8765,
    threads: int = 8,
):
  """Serve with waitress (production WSGI, thread pool) until interrupted."""
  import waitress  # pylint: disable=g-import-not-at-top

  check_bind(app, host)
  print(
      f'rlhf_tf preference UI: http://{host}:{port}/  (results: '
      f'http://{host}:{port}/results)',
      flush=True,
  )
  waitress.serve(app, host=host, port=port, threads=threads, ident='rlhf_tf-ui')
