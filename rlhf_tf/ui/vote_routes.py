"""Handing out pairs and taking votes: the three POST routes.

  POST /api/next   {}             the pair to show (leased) and progress
  POST /api/vote   {lease, scene_id, pair_id, left_action, right_action,
                    choice, vote_id[, view]}  -> {event_id, ...}
  POST /api/undo   {[vote_id]}    -> {event_id, pair, ...}

Each acts as the signed-in inspector only (``sign_in``). A vote needs the
signed lease its ``/api/next`` handed out: no votes on pairs leased to
others or never leased (409), and one answer per inspector and pair until it
is undone (409).

Turning the pair (``views``: e.g. 12 azimuths of the orbit camera, wired by
jobs/collect.py): the page shows both renderings at the same view, always,
and turns them together; a handed-out pair names both sides' image URLs at
every view. A vote names the view shown (``view``, default 0), and the store
records its azimuth and render key with the vote.

State: every vote and undo goes to the store at once (one transaction), so a
restarted app resumes each inspector where they were. Only the leases live in
memory (see ``rlhf_tf.ui.leases``).

Idempotent retries: the client names each vote with a random ``vote_id``,
stored as the vote's ``session``. Under a process-wide lock the app looks the
id up before recording, so a vote retried after a lost answer is stored once
and answered with the original event id. This is exact for one server
process; several processes on one store would need a unique index in the
store. ``/api/undo`` with ``vote_id`` withdraws exactly that
vote and is idempotent the same way.
"""

from __future__ import annotations

from typing import Optional

import flask

from rlhf_tf.preferences import store as store_lib
from rlhf_tf.ui import app_state, auth, leases, sign_in
from rlhf_tf.ui.api_input import ApiError, int_field, json_body, vote_id_of

MAX_LEASE_AGE_S = 24 * 3600.0  # a vote on a pair shown longer ago is refused

blueprint = flask.Blueprint('votes', __name__)


def view_of_vote(state: app_state.AppState, data: dict) -> int:
  """The view a vote was cast at (body field ``view``, default 0)."""
  if data.get('view') is None:
    return 0
  view = int_field(data, 'view')
  if view >= len(state.views):
    raise ApiError(
        400, f'view must be below {len(state.views)} (the views of this app)'
    )
  return view


def view_urls(state: app_state.AppState, path: str) -> list[str]:
  """``path`` at every view (view 0 without a query: today's URLs)."""
  return [path] + [f'{path}?view={k}' for k in range(1, len(state.views))]


def pair_actions(
    state: app_state.AppState, scene_id: str, pair_id: int
) -> tuple[int, int]:
  row = (
      state.store()
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


def progress(
    state: app_state.AppState, inspector: str, remaining: Optional[int] = None
) -> dict:
  store = state.store()
  mine = store.effective_votes(inspector=inspector)
  return dict(
      votes=sum(v.scene_id in state.scene_ids for v in mine),
      target=state.votes_target,
      remaining=remaining,
      total_votes=sum(
          store.vote_counts(s)['effective'] for s in state.scene_ids
      ),
  )


def undo_hint(state: app_state.AppState, inspector: str) -> Optional[str]:
  """The vote_id of the inspector's latest vote an undo would withdraw."""
  row = (
      state.store()
      .conn.execute(
          "SELECT v.session FROM votes v WHERE v.kind = 'vote' AND "
          'v.inspector = ? AND NOT EXISTS (SELECT 1 FROM votes u WHERE '
          'u.undoes_event_id = v.event_id) ORDER BY v.event_id DESC LIMIT 1',
          (inspector,),
      )
      .fetchone()
  )
  return None if row is None else (row[0] or '')


def handout(
    state: app_state.AppState, lease: Optional[leases.Lease]
) -> Optional[dict]:
  """What the page needs to show a leased pair, with its signed lease."""
  if lease is None:
    return None
  s, l, r = lease.scene_id, lease.left_action, lease.right_action
  signed = state.keys.sign_lease(
      auth.SignedLease(lease.inspector, s, lease.pair_id, l, r, lease.shown_at)
  )
  left_urls = view_urls(state, f'/render/{s}/{l}.png')
  right_urls = view_urls(state, f'/render/{s}/{r}.png')
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
      jh_url=f'/jh/{s}/{l}/{r}.png' if state.jh_png else None,
      # view k: azimuth (degrees or None) and both sides' images
      views=[
          dict(azimuth=v.azimuth_deg, left_url=a, right_url=b)
          for v, a, b in zip(state.views, left_urls, right_urls)
      ],
  )


@blueprint.route('/api/next', methods=['POST'])
def api_next():
  state = app_state.current()
  inspector = sign_in.inspector(state, json_body())
  lease, remaining = state.dispenser.next_pair(state.store(), inspector)
  return dict(
      pair=handout(state, lease),
      done=lease is None,
      progress=progress(state, inspector, remaining),
      undo_vote_id=undo_hint(state, inspector),
  )


@blueprint.route('/api/vote', methods=['POST'])
def api_vote():
  state = app_state.current()
  data = json_body()
  inspector = sign_in.inspector(state, data)
  scene_id = state.scene(data.get('scene_id'))
  pair_id = int_field(data, 'pair_id')
  left, right = int_field(data, 'left_action'), int_field(data, 'right_action')
  choice = data.get('choice')
  if choice not in store_lib.CHOICES:
    raise ApiError(
        400,
        'choice must be one of '
        f'{", ".join(store_lib.CHOICES)}; got {choice!r}',
    )
  vote_id = vote_id_of(data)
  view = view_of_vote(state, data)
  pair = pair_actions(state, scene_id, pair_id)
  if tuple(sorted((left, right))) != pair or left == right:
    raise ApiError(
        400,
        f'left/right actions ({left}, {right}) are not the '
        f'actions {pair} of pair {pair_id}',
    )
  now = state.clock()
  event_id, duplicate = record_vote(
      state,
      scene_id,
      pair_id,
      left,
      right,
      choice,
      inspector,
      vote_id,
      data.get('lease'),
      now,
      state.views[view],
  )
  state.dispenser.leases.release(inspector, scene_id, pair_id)
  return dict(
      event_id=event_id,
      duplicate=duplicate,
      progress=progress(state, inspector),
      undo_vote_id=undo_hint(state, inspector),
  )


def leased_shown_at(
    state: app_state.AppState, token, inspector, scene_id, pair_id, left, right
) -> float:
  """When the pair was shown, from the voter's signed lease on it."""
  lease = state.keys.lease_of(token, MAX_LEASE_AGE_S, state.clock())
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
    state: app_state.AppState,
    scene_id,
    pair_id,
    left,
    right,
    choice,
    inspector,
    vote_id,
    lease_token,
    answered_at,
    view: app_state.View,
) -> tuple[int, bool]:
  """(event id, was it a retry) -- one vote per vote_id (see docstring),
  on a pair leased to the voter, one answer per inspector and pair."""
  store = state.store()
  with state.vote_lock:
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
    shown_at = leased_shown_at(
        state, lease_token, inspector, scene_id, pair_id, left, right
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


@blueprint.route('/api/undo', methods=['POST'])
def api_undo():
  state = app_state.current()
  data = json_body()
  inspector = sign_in.inspector(state, data)
  vote_id = vote_id_of(data, required=False)
  store = state.store()
  with state.vote_lock:
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
      event_id = row[0] if duplicate else store.record_undo(inspector, vote_id)
    except store_lib.VoteError as e:
      raise ApiError(409, str(e)) from e
  undone = store.event(store.event(event_id).undoes_event_id)
  lease = None
  if undone.scene_id in state.scene_ids:
    lease = state.dispenser.give_back(
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
      pair=handout(state, lease),
      progress=progress(state, inspector),
      undo_vote_id=undo_hint(state, inspector),
  )
