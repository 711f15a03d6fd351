"""The baselines table of propose runs (README) and the proposal's note on
how scan-specific a reward can be."""

import json

from rlhf_tf.evaluation import baselines, proposal


def _summary(scene, proposal_score, expert, presets, random=0.5):
  rows = [
      dict(name='proposal', kind='proposal', score=proposal_score),
      dict(name='built-in expert', kind='expert', score=expert),
      dict(name='median of 32 random actions', kind='random', score=random),
  ]
  rows += [
      dict(name=n, kind='invesalius', group=g, score=s) for n, g, s in presets
  ]
  bone = [r for r in rows if r.get('group') == 'Bone CT']
  best = max(bone, key=lambda r: r['score']) if bone else None
  return dict(
      scene=scene,
      rows=rows,
      proposal_over_expert=proposal_score / expert,
      best_invesalius_bone=best,
      proposal_beats_best_bone=(
          None if best is None else proposal_score >= best['score']
      ),
  )


A = _summary(
    'phantom-s7',
    0.94,
    0.936,
    [
        ('Pencil', 'Bone CT', 0.851),
        ('Vascular', 'Soft Tissue CT', 0.9),
        ('Gold Bone', 'Bone CT', 0.3),
    ],
)
B = _summary(
    'cranium',
    0.6,
    0.8,
    [('Pencil', 'Bone CT', 0.65), ('Gold Bone', 'Bone CT', 0.2)],
)


def test_markdown_table_rows_columns_and_verdicts():
  lines = baselines.markdown_table([A, B]).splitlines()
  assert lines[0] == '| TF | kind | phantom-s7 | cranium |'
  body = [line.split(' | ')[0].lstrip('| ') for line in lines[2:]]
  assert body == [
      '**proposal**',
      'built-in expert',
      'median of 32 random actions',
      'Gold Bone',
      'Pencil',
      'Vascular',
      'proposal / expert',
      'proposal >= best InVesalius bone preset',
  ]
  assert '| Pencil | invesalius (Bone CT) | 0.851 | 0.650 |' in lines
  # A preset missing from one scene's run leaves its cell empty.
  assert '| Vascular | invesalius (Soft Tissue CT) | 0.900 |  |' in lines
  assert lines[-2] == '| proposal / expert | | 1.004 | 0.750 |'
  assert lines[-1] == (
      '| proposal >= best InVesalius bone preset | | yes '
      '(best: Pencil) | no (best: Pencil) |'
  )


def test_cli_reads_workdirs_and_names_a_missing_file(tmp_path, capsys):
  for name, summary in (('a', A), ('b', B)):
    (tmp_path / name).mkdir()
    (tmp_path / name / 'baselines.json').write_text(json.dumps(summary))
  assert baselines.main([str(tmp_path / 'a'), str(tmp_path / 'b')]) == 0
  assert capsys.readouterr().out == baselines.markdown_table([A, B])
  assert (
      baselines.main(
          [str(tmp_path / 'a'), str(tmp_path / 'b'), '--labels=seed 7, CT']
      )
      == 0
  )
  assert capsys.readouterr().out.startswith('| TF | kind | seed 7 | CT |')
  assert baselines.main([str(tmp_path / 'a'), '--labels=x,y']) == 2
  assert '2 labels for 1 workdirs' in capsys.readouterr().err
  assert baselines.main([str(tmp_path / 'a'), str(tmp_path / 'c')]) == 2
  assert str(tmp_path / 'c' / 'baselines.json') in capsys.readouterr().err


def test_scan_specificity_note_says_what_one_scene_means():
  one = proposal.scan_specificity_note(1)
  assert 'ONE scene' in one and 'reward_ce.py:multiscene' in one
  assert '6 scenes' in proposal.scan_specificity_note(6)
  assert 'unknown' in proposal.scan_specificity_note(0)
