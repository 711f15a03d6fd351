"""Numbers for the results page: votes per inspector, tie rate, agreement.

Agreement is measured on overlapping pairs (judged by two or more
inspectors). Each inspector's latest effective vote on a pair is mapped to
the pair's canonical orientation -- 'a' (the lower action id preferred), 'b',
'equal' or 'both_bad' -- because inspectors saw the two sides in different
orders. The tie rate counts both kinds of tie ('equal' and 'both_bad').
For every two inspectors who share pairs we report percent agreement and
Cohen's kappa over the three categories,

  kappa = (p_o - p_e) / (1 - p_e),  p_e = sum_k p1(k) p2(k),

and a pooled figure over all overlapping pairs using each pair's first two
raters (in vote order). kappa is None when p_e = 1 (both raters used one
category only): it is undefined there.

Views: votes cast while the pair was turned (``views`` of the app) record the
azimuth shown; ``by_view`` counts votes and ties per azimuth (None: not
recorded, e.g. votes from before views were stored), and each inspector's
``turned`` counts their votes cast away from the first view (did they use
the turntable?).
"""

from __future__ import annotations

from collections import Counter, defaultdict
import itertools
from typing import Optional, Sequence

CATEGORIES = ('a', 'b', 'equal', 'both_bad')
TIES = ('equal', 'both_bad')


def canonical_choice(left_action: int, right_action: int, choice: str) -> str:
  """A vote as 'a' / 'b' relative to the pair's (min, max) ids, or its tie
  kind ('equal' / 'both_bad')."""
  if choice in TIES:
    return choice
  winner = left_action if choice == 'left' else right_action
  return 'a' if winner == min(left_action, right_action) else 'b'


def cohen_kappa(
    ratings1: Sequence[str],
    ratings2: Sequence[str],
    categories: Sequence[str] = CATEGORIES,
) -> Optional[float]:
  """Cohen's kappa of two raters over the same items (None if undefined)."""
  if len(ratings1) != len(ratings2):
    raise ValueError('both raters must rate the same items')
  n = len(ratings1)
  if n == 0:
    return None
  p_o = sum(x == y for x, y in zip(ratings1, ratings2)) / n
  c1, c2 = Counter(ratings1), Counter(ratings2)
  p_e = sum(c1[k] * c2[k] for k in categories) / (n * n)
  if p_e >= 1.0:
    return None
  return (p_o - p_e) / (1.0 - p_e)


def percent_agreement(
    ratings1: Sequence[str], ratings2: Sequence[str]
) -> Optional[float]:
  if not ratings1:
    return None
  return 100.0 * sum(x == y for x, y in zip(ratings1, ratings2)) / len(ratings1)


def _agreement(r1, r2) -> dict:
  return dict(
      n=len(r1), percent=percent_agreement(r1, r2), kappa=cohen_kappa(r1, r2)
  )


def latest_ratings(votes) -> dict:
  """{(scene, pair): {inspector: (event_id, canonical choice)}} from
  effective votes (latest vote of each inspector per pair wins)."""
  out: dict = defaultdict(dict)
  for v in votes:
    out[(v.scene_id, v.pair_id)][v.inspector] = (
        v.event_id,
        canonical_choice(v.left_action, v.right_action, v.choice),
    )
  return out


def agreement(votes) -> dict:
  """Pairwise and pooled agreement on pairs with two or more inspectors."""
  ratings = latest_ratings(votes)
  overlapping = {k: r for k, r in ratings.items() if len(r) >= 2}
  by_two: dict = defaultdict(lambda: ([], []))
  pooled = ([], [])
  for _, raters in sorted(overlapping.items()):
    for i, j in itertools.combinations(sorted(raters), 2):
      by_two[(i, j)][0].append(raters[i][1])
      by_two[(i, j)][1].append(raters[j][1])
    first, second = sorted(raters.values())[:2]  # by event id: vote order
    pooled[0].append(first[1])
    pooled[1].append(second[1])
  pairs = [
      dict(inspectors=[i, j], **_agreement(*r))
      for (i, j), r in sorted(by_two.items())
  ]
  return dict(
      overlapping_pairs=len(overlapping),
      pooled=_agreement(*pooled),
      by_inspector_pair=pairs,
  )


def _answer_seconds(v) -> Optional[float]:
  if v.shown_at is None or v.answered_at is None:
    return None
  return max(0.0, v.answered_at - v.shown_at)


def _median(values) -> Optional[float]:
  values = sorted(values)
  if not values:
    return None
  mid = len(values) // 2
  return (
      values[mid] if len(values) % 2 else 0.5 * (values[mid - 1] + values[mid])
  )


def _blank(inspector: str) -> dict:
  return dict(
      inspector=inspector,
      left=0,
      right=0,
      equal=0,
      both_bad=0,
      skip=0,
      undone=0,
      turned=0,
      _times=[],
  )


def per_inspector(
    effective, skips: dict, undos: dict, first_azimuth=None
) -> list[dict]:
  """Counts per inspector from effective votes, {inspector: skips} and
  {inspector: undos}; tie rate, median answer time (shown -> answered) and
  votes cast at a recorded view other than ``first_azimuth`` (turned)."""
  rows: dict = {}
  for v in effective:
    row = rows.setdefault(v.inspector, _blank(v.inspector))
    row[v.choice] += 1
    row['turned'] += v.view_azimuth not in (None, first_azimuth)
    if _answer_seconds(v) is not None:
      row['_times'].append(_answer_seconds(v))
  for key, counts in (('skip', skips), ('undone', undos)):
    for inspector, count in counts.items():
      rows.setdefault(inspector, _blank(inspector))[key] = count
  out = []
  for row in sorted(rows.values(), key=lambda r: r['inspector']):
    row['votes'] = row['left'] + row['right'] + row['equal'] + row['both_bad']
    ties = row['equal'] + row['both_bad']
    row['tie_rate'] = ties / row['votes'] if row['votes'] else None
    row['median_seconds'] = _median(row.pop('_times'))
    out.append(row)
  return out


def _per_inspector_sql(store, where: str, scene_ids) -> dict:
  """{inspector: count} of vote-log rows matching ``where`` (read only)."""
  sql = f'SELECT inspector, count(*) FROM votes v WHERE {where}'
  params = []
  if scene_ids:
    sql += f' AND v.scene_id IN ({", ".join("?" * len(scene_ids))})'
    params = list(scene_ids)
  return dict(
      store.conn.execute(sql + ' GROUP BY inspector', params).fetchall()
  )


def by_view(effective) -> list[dict]:
  """Votes and tie rate per recorded view azimuth (degrees), None last."""
  rows: dict = {}
  for v in effective:
    row = rows.setdefault(v.view_azimuth, dict(azimuth=v.view_azimuth))
    row['votes'] = row.get('votes', 0) + 1
    row['ties'] = row.get('ties', 0) + (v.choice in TIES)
  out = sorted(
      rows.values(),
      key=lambda r: (r['azimuth'] is None, r['azimuth'] or 0.0),
  )
  for row in out:
    row['tie_rate'] = row['ties'] / row['votes']
  return out


def summary(
    store,
    scene_ids: Optional[Sequence[str]] = None,
    first_azimuth: Optional[float] = None,
) -> dict:
  """Everything the results page shows, JSON-able; ``first_azimuth``: the
  azimuth a pair is first shown at (votes elsewhere count as turned)."""
  scene_ids = sorted(scene_ids) if scene_ids else []
  effective = [
      v
      for v in store.effective_votes()
      if not scene_ids or v.scene_id in scene_ids
  ]
  skips = _per_inspector_sql(
      store,
      "v.kind = 'vote' AND v.choice = 'skip' AND NOT EXISTS (SELECT 1 "
      'FROM votes u WHERE u.undoes_event_id = v.event_id)',
      scene_ids,
  )
  undos = _per_inspector_sql(store, "v.kind = 'undo'", scene_ids)
  counts = Counter(v.choice for v in effective)
  n = len(effective)
  return dict(
      votes=n,
      skips=sum(skips.values()),
      undos=sum(undos.values()),
      left=counts['left'],
      right=counts['right'],
      equal=counts['equal'],
      both_bad=counts['both_bad'],
      tie_rate=(counts['equal'] + counts['both_bad']) / n if n else None,
      inspectors=per_inspector(effective, skips, undos, first_azimuth),
      agreement=agreement(effective),
      by_view=by_view(effective),
  )
