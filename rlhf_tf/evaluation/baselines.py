"""Baselines a proposed TF is compared with, judged by the simulated inspector.

A baseline is any TF the renderer can draw on a scene: a polygon action (the
built-in expert, random actions) or an imported preset (InVesalius .plist,
3D Slicer .vp.json), which becomes a TF table on the scene's JH grid with
the scene's opacity unit (``export.tables.SeparableTF.table``). Presets are
rendered with the scene's own lighting and view, so the comparison is about
the transfer function alone.

The table of several propose runs (README, "Your own scan"):

  python -m rlhf_tf.evaluation.baselines DIR [DIR ...] [--labels=a,b]

prints every row of each DIR/baselines.json (a column per run, headed by
its scene or the given label) as markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
import sys
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rlhf_tf.evaluation import figures
from rlhf_tf.export import invesalius_presets, slicer, tables
from rlhf_tf.preferences import inspector as inspector_lib
from rlhf_tf.preferences import tissues
from rlhf_tf.render import cached_render
from rlhf_tf.render import polygon as polygon_lib


@dataclasses.dataclass(frozen=True)
class Preset:
  """An imported TF: its name, kind ('invesalius' | 'slicer') and group."""

  name: str
  kind: str
  group: str
  tf: tables.SeparableTF


def load_presets(
    invesalius_dir: str = '',
    slicer_files: Sequence[str] = (),
    volume_min_hu: float = -1024.0,
    gradient_scale_mm: float = 1.0,
) -> list[Preset]:
  """InVesalius presets of a folder ('' = the cache, skipped when not
  fetched) and the given Slicer .vp.json files."""
  out = []
  folder = (
      Path(invesalius_dir)
      if invesalius_dir
      else invesalius_presets.presets_dir()
  )
  for path in invesalius_presets.list_presets(folder):
    out.append(
        Preset(
            name=path.stem,
            kind='invesalius',
            group=invesalius_presets.preset_group(path),
            tf=invesalius_presets.read_preset(path, volume_min_hu),
        )
    )
  for path in slicer_files:
    if not os.path.isfile(path):
      raise FileNotFoundError(f'Slicer preset {path} not found')
    tf = slicer.read_vp_json(path, gradient_scale_mm=gradient_scale_mm)
    out.append(Preset(name=tf.name, kind='slicer', group='user', tf=tf))
  return out


def preset_table(scene, preset: tables.SeparableTF) -> np.ndarray:
  """[bins, bins, 4] RGBA of a preset on the scene's JH grid, alpha per the
  scene's reference step."""
  t = preset.table(
      scene.jh.axes,
      scene.bins,
      unit_distance_mm=scene.settings.reference_step_mm,
  )
  return t.rgba


def table_criteria(scene, rgba_table) -> tuple[np.ndarray, np.ndarray]:
  """(rgba [H, W, 4], the inspector's criteria (5,)) of a TF table."""
  rgba, weights, hits = cached_render.render_cached_labels(
      scene.cache,
      jnp.asarray(rgba_table, jnp.float32),
      len(tissues.GROUPS),
      scene.settings,
  )
  return rgba, inspector_lib.criteria(
      np.asarray(weights), np.asarray(hits), np.asarray(rgba)
  )


def table_score(scene, rgba_table, inspector_cfg) -> float:
  """The inspector's score of a TF table on a scene."""
  _, crit = table_criteria(scene, rgba_table)
  return float(
      inspector_lib.score(crit, inspector_lib.from_config(inspector_cfg))
  )


def random_median(
    scene, key, num: int, n_vertices: int, inspector_cfg
) -> tuple[float, np.ndarray]:
  """(median inspector score of ``num`` random actions, the median action)."""
  actions = np.asarray(polygon_lib.random_actions(key, num, n_vertices))
  scores = inspector_lib.score_actions(scene, actions, inspector_cfg)
  j = int(np.argsort(scores)[len(scores) // 2])
  return float(np.median(scores)), actions[j]


def bone_presets(presets: Sequence[Preset]) -> list[Preset]:
  """The InVesalius presets of the 'Bone CT' group."""
  return [p for p in presets if p.kind == 'invesalius' and p.group == 'Bone CT']


def baselines_rows(
    scene,
    proposal,
    expert,
    presets: Sequence[Preset],
    inspector_cfg,
    key,
    num_random: int,
):
  """(one row per TF: name, kind, [group,] inspector score on ``scene``;
  the median random action [n, 2])."""
  rows = []
  for name, kind, vertices in (
      ('proposal', 'proposal', proposal),
      ('built-in expert', 'expert', expert),
  ):
    rows.append(
        dict(
            name=name,
            kind=kind,
            score=float(
                inspector_lib.score_actions(
                    scene, np.asarray(vertices)[None], inspector_cfg
                )[0]
            ),
        )
    )
  median, median_action = random_median(
      scene, key, num_random, np.asarray(proposal).shape[0], inspector_cfg
  )
  rows.append(
      dict(
          name=f'median of {num_random} random actions',
          kind='random',
          score=median,
      )
  )
  for p in presets:
    rows.append(
        dict(
            name=p.name,
            kind=p.kind,
            group=p.group,
            score=table_score(scene, preset_table(scene, p.tf), inspector_cfg),
        )
    )
  return rows, median_action


def rgba_of(scene, vertices_or_table) -> np.ndarray:
  """A rendering [H, W, 4] of a polygon [n, 2] or a TF table [B, B, 4]."""
  x = np.asarray(vertices_or_table)
  if x.ndim == 2:
    return np.asarray(scene.render(x))
  return np.asarray(
      cached_render.render_cached(
          scene.cache, jnp.asarray(x, jnp.float32), scene.settings
      )
  )


def compare_with_proposal(
    config, workdir: str, gold_scene, scene, best, say
) -> dict:
  """Inspector scores (on gold_scene) of the proposal best [n, 2], the
  expert, the presets of config.baselines and the median random action, into
  workdir/baselines.json and .md, the renderings side by side (on scene) into
  baselines.png; say prints one line."""
  b = config.baselines
  volume = scene.volume
  presets = load_presets(
      b.invesalius_dir,
      tuple(b.slicer_files),
      volume_min_hu=float(np.min(volume.hu)),
      gradient_scale_mm=float(np.mean(np.asarray(volume.spacing))),
  )
  rows, median_action = baselines_rows(
      gold_scene,
      best,
      scene.experts[0],
      presets,
      config.inspector,
      jax.random.fold_in(jax.random.key(config.propose.seed), 1),
      b.num_random,
  )
  by_kind = {
      r['kind']: r
      for r in rows
      if r['kind'] in ('proposal', 'expert', 'random')
  }
  bone = [r for r in rows if r.get('group') == 'Bone CT']
  best_bone = max(bone, key=lambda r: r['score']) if bone else None
  proposal_score = by_kind['proposal']['score']
  summary = dict(
      scene=scene.scene_id,
      rows=rows,
      proposal_over_expert=proposal_score
      / max(by_kind['expert']['score'], 1e-9),
      best_invesalius_bone=best_bone,
      proposal_beats_best_bone=(
          None if best_bone is None else proposal_score >= best_bone['score']
      ),
      presets_loaded=len(presets),
  )
  with open(os.path.join(workdir, 'baselines.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  with open(os.path.join(workdir, 'baselines.md'), 'w') as f:
    f.write(markdown_table([summary]))
  shown = [(by_kind['proposal'], best), (by_kind['expert'], scene.experts[0])]
  if best_bone is not None:
    tf = next(p.tf for p in presets if p.name == best_bone['name'])
    shown.append(
        (
            dict(best_bone, name=f'InVesalius {best_bone["name"]}'),
            preset_table(scene, tf),
        )
    )
  shown.append((by_kind['random'], median_action))
  figures.overview(
      [rgba_of(scene, x)[..., :3] for _, x in shown],
      [f'{r["name"]}\ninspector {r["score"]:.3f}' for r, _ in shown],
      os.path.join(workdir, 'baselines.png'),
      suptitle=f'{scene.scene_id}: proposal vs baselines',
  )
  say(
      f'baselines: proposal {proposal_score:.3f}, expert '
      f'{by_kind["expert"]["score"]:.3f}, best InVesalius bone preset '
      f'{best_bone["score"] if best_bone else float("nan"):.3f}, median '
      f'random {by_kind["random"]["score"]:.3f} ({len(presets)} presets)'
  )
  return summary


def _row_key(row: dict) -> tuple:
  order = dict(proposal=0, expert=1, random=2)
  return (order.get(row['kind'], 3), row.get('group', ''), row['name'])


def markdown_table(
    summaries: Sequence[dict], labels: Optional[Sequence[str]] = None
) -> str:
  """Markdown: a row per TF (proposal, expert, median random, then every
  preset by group), a column of inspector scores per baselines summary
  (``baselines.json``), the proposal's ratio to the expert and whether it
  beats the best InVesalius bone preset at the bottom."""
  labels = list(labels or [s['scene'] for s in summaries])
  scores, rows = [], {}
  for s in summaries:
    scores.append({(r['kind'], r['name']): r['score'] for r in s['rows']})
    for r in s['rows']:
      rows.setdefault((r['kind'], r['name']), r)
  head = '| TF | kind | ' + ' | '.join(labels) + ' |'
  lines = [head, '| --- | --- |' + ' --- |' * len(labels)]
  for key, r in sorted(rows.items(), key=lambda kv: _row_key(kv[1])):
    kind = r['kind'] + (f' ({r["group"]})' if r.get('group') else '')
    cells = [f'{sc[key]:.3f}' if key in sc else '' for sc in scores]
    name = f'**{r["name"]}**' if r['kind'] == 'proposal' else r['name']
    lines.append(f'| {name} | {kind} | ' + ' | '.join(cells) + ' |')
  ratio = [f'{s["proposal_over_expert"]:.3f}' for s in summaries]
  lines.append('| proposal / expert | | ' + ' | '.join(ratio) + ' |')
  bone = [
      (
          ''
          if s.get('best_invesalius_bone') is None
          else f'{"yes" if s["proposal_beats_best_bone"] else "no"} (best: '
          f'{s["best_invesalius_bone"]["name"]})'
      )
      for s in summaries
  ]
  lines.append(
      '| proposal >= best InVesalius bone preset | | ' + ' | '.join(bone) + ' |'
  )
  return '\n'.join(lines) + '\n'


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m rlhf_tf.evaluation.baselines',
      description='The baselines table of propose runs, as markdown.',
  )
  parser.add_argument(
      'workdirs',
      nargs='+',
      help='workdirs of launch.py --experiment=' 'experiments/propose.py runs',
  )
  parser.add_argument(
      '--labels',
      default='',
      help='comma-separated column headings, one per workdir '
      '(default: the scene ids)',
  )
  args = parser.parse_args(argv)
  labels = [x.strip() for x in args.labels.split(',')] if args.labels else None
  if labels is not None and len(labels) != len(args.workdirs):
    print(
        f'error: --labels has {len(labels)} labels for '
        f'{len(args.workdirs)} workdirs',
        file=sys.stderr,
    )
    return 2
  summaries = []
  for d in args.workdirs:
    path = os.path.join(d, 'baselines.json')
    try:
      with open(path) as f:
        summaries.append(json.load(f))
    except (OSError, ValueError) as e:
      print(f'error: {path}: {e}', file=sys.stderr)
      return 2
  sys.stdout.write(markdown_table(summaries, labels))
  return 0


if __name__ == '__main__':
  sys.exit(main())
