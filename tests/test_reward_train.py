"""Tests of preference data, the training loop, checkpoints and resume."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from rlhf_tf.reward import checkpointing, predict, train
from rlhf_tf.reward import data as data_lib
from rlhf_tf.reward import model as model_lib
from rlhf_tf.reward import train_step as train_step_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def synthetic_task(num_pairs=400, seed=0):
  """2 scenes, JH 16x16, 12 actions each. Hidden score: mean x of the
  polygon in scene 0 and -mean x in scene 1 (so the JH matters); ties when
  the two scores are within 0.04."""
  rng = np.random.default_rng(seed)
  jh0 = np.zeros((16, 16), np.float32)
  jh0[:, :8] = 1.0
  jhs = [jh0, jh0[:, ::-1].copy()]
  acts = [rng.random((12, 4, 2)).astype(np.float32) for _ in range(2)]
  score = [acts[0][..., 0].mean(-1), -acts[1][..., 0].mean(-1)]
  examples = []
  for _ in range(num_pairs):
    s = int(rng.integers(2))
    l, r = rng.choice(12, 2, replace=False)
    d = score[s][l] - score[s][r]
    examples.append((s, l, r, 0.5 if abs(d) < 0.04 else float(d > 0)))
  return data_lib.from_examples(jhs, acts, examples)


def tiny_config(**overrides):
  c = train.default_config()
  c.num_seeds = 2
  c.losses = ('ce',)
  c.num_epochs = 2
  c.batch_size = 32
  c.held_out_fraction = 0.2
  c.checkpoint_every_epochs = 1  # the resume tests kill after epoch 1
  c.model.update(
      dict(
          conv_features=(4, 8, 8),
          kernel=3,
          strides=(2, 2, 2),
          input_pool=1,
          readout_pool=1,
          action_features=(16, 32),
          hidden=(32, 16),
      )
  )
  for k, v in overrides.items():
    c[k] = v
  return c


@pytest.fixture(scope='module')
def task():
  return synthetic_task()


@pytest.fixture(scope='module')
def reference(tmp_path_factory, task):
  """An uninterrupted 2-epoch run of tiny_config(): (workdir, summary)."""
  workdir = tmp_path_factory.mktemp('reference')
  return workdir, train.train_and_evaluate(tiny_config(), str(workdir), task)


def _params(workdir, loss='ce', seeds=2):
  return [predict.load_params(str(workdir), loss, k) for k in range(seeds)]


def _assert_trees_equal(a, b):
  jax.tree_util.tree_map(np.testing.assert_array_equal, a, b)


def _read(path):
  with open(path) as f:
    return f.read()


# ----------------------------------------------------------------- data ---


def test_from_examples_pads_and_validates():
  jhs = [np.zeros((8, 8)), np.ones((8, 8))]
  acts = [np.zeros((3, 4, 2)), np.ones((5, 4, 2))]
  d = data_lib.from_examples(jhs, acts, [(1, 4, 0, 1.0), (0, 2, 1, 0.5)])
  assert d.actions.shape == (2, 5, 4, 2) and list(d.num_actions) == [3, 5]
  assert d.jh.dtype == np.float32 and d.target.dtype == np.float32
  with pytest.raises(ValueError, match='out of range'):
    data_lib.from_examples(jhs, acts, [(0, 3, 0, 1.0)])  # scene 0 has 3
  with pytest.raises(ValueError, match='probabilities'):
    data_lib.from_examples(jhs, acts, [(0, 1, 0, 2.0)])


def test_split_is_deterministic_stratified_and_disjoint(task):
  tr, ho = data_lib.split_pairs(task, 0.25, seed=3)
  tr2, ho2 = data_lib.split_pairs(task, 0.25, seed=3)
  np.testing.assert_array_equal(ho.left, ho2.left)
  assert tr.num_pairs + ho.num_pairs == task.num_pairs
  ties = int(np.sum(task.target == 0.5))
  assert int(np.sum(ho.target == 0.5)) == round(0.25 * ties)
  key = lambda d: set(
      zip(
          d.scene.tolist(), d.left.tolist(), d.right.tolist(), d.target.tolist()
      )
  )
  assert len(key(tr) | key(ho)) == len(key(task))
  _, ho3 = data_lib.split_pairs(task, 0.25, seed=4)
  assert not np.array_equal(ho.left, ho3.left)


def test_epoch_batches_cover_every_pair_once():
  key = jax.random.key(0)
  idx, w = data_lib.epoch_batches(key, 0, 70, 32)
  assert idx.shape == (3, 32) and float(w.sum()) == 70
  real = np.asarray(idx)[np.asarray(w) > 0]
  assert sorted(real.tolist()) == list(range(70))
  idx1, _ = data_lib.epoch_batches(key, 1, 70, 32)
  assert not np.array_equal(idx, idx1)


# ------------------------------------------------------------- training ---


def test_learns_synthetic_task(tmp_path, task):
  config = tiny_config(
      num_epochs=25, losses=('ce', 'nll'), checkpoint_every_epochs=5
  )
  summary = train.train_and_evaluate(config, str(tmp_path), task)
  for loss in ('ce', 'nll'):
    for k in range(2):
      final = summary['runs'][loss][f'seed_{k}']
      assert final['heldout_accuracy'] >= 0.9, (loss, k, final)
      assert final['epoch'] == 25
    rows = [
        json.loads(line)
        for line in open(tmp_path / loss / 'seed_0' / 'metrics.jsonl')
    ]
    assert [r['epoch'] for r in rows] == list(range(1, 26))
    for key in (
        'train_loss',
        'heldout_ce',
        'heldout_nll',
        'heldout_accuracy',
        'heldout_tie_loglik',
        'train_accuracy',
    ):
      assert key in rows[-1]
    assert rows[-1]['train_loss'] < rows[0]['train_loss']
    sel = summary['selected'][loss]
    finals = [
        summary['runs'][loss][f'seed_{k}']['train_loss'] for k in range(2)
    ]
    assert sel['seed'] == int(np.argmax(finals))  # paper rule
  on_disk = json.load(open(tmp_path / 'summary.json'))
  assert on_disk['selected'] == summary['selected']
  # Orbax keeps only the last max_to_keep epochs.
  steps = sorted(
      int(s) for s in os.listdir(tmp_path / 'ce' / 'checkpoints') if s.isdigit()
  )
  assert steps == [15, 20, 25]
  # predict_rewards: eval mode, chunked == one call of the model.
  params = predict.load_params(str(tmp_path), 'ce', 0)
  model = model_lib.model_from_config(config.model)
  acts = np.random.default_rng(0).random((11, 4, 2)).astype(np.float32)
  r = predict.predict_rewards(params, config, task.jh[0], acts, chunk_size=4)
  np.testing.assert_allclose(
      r, model.apply({'params': params}, task.jh[0], acts), rtol=1e-5, atol=1e-6
  )
  assert r.shape == (11,)
  many = np.random.default_rng(1).random((20000, 4, 2)).astype(np.float32)
  r = predict.predict_rewards(params, config, task.jh[1], many)
  assert r.shape == (20000,) and np.all(np.isfinite(r))
  np.testing.assert_allclose(
      r[-5:],
      model.apply({'params': params}, task.jh[1], many[-5:]),
      rtol=1e-5,
      atol=1e-6,
  )


def test_same_seed_same_numbers(tmp_path, task, reference):
  ref_dir, full = reference
  again = train.train_and_evaluate(tiny_config(), str(tmp_path / 'b'), task)
  _assert_trees_equal(_params(ref_dir), _params(tmp_path / 'b'))
  assert full['runs'] == again['runs']
  p0, p1 = _params(ref_dir)  # two seeds of one job differ
  assert not np.array_equal(p0['head']['kernel'], p1['head']['kernel'])
  other = train.train_and_evaluate(
      tiny_config(seed=1), str(tmp_path / 'c'), task
  )
  assert other['runs'] != full['runs']


def test_every_seed_rewards_stack_each_seeds_predictions(task, reference):
  ref_dir, _ = reference
  config = tiny_config()
  stacked = predict.load_stacked_params(ref_dir, 'ce')
  acts = np.random.default_rng(2).random((9, 4, 2)).astype(np.float32)
  every = predict.every_seed_rewards(
      stacked, config, task.jh[1], acts, chunk_size=4
  )
  assert every.shape == (2, 9)
  for s in range(2):
    np.testing.assert_array_equal(
        every[s],
        predict.predict_rewards(
            predict.load_params(str(ref_dir), 'ce', s),
            config,
            task.jh[1],
            acts,
            chunk_size=4,
        ),
    )
  assert not np.allclose(every[0], every[1])  # the seeds differ


def test_resume_after_crash(tmp_path, task, reference, monkeypatch):
  ref_dir, full = reference
  config = tiny_config()

  # Crash right after the epoch-1 checkpoint, leaving a stale metrics line
  # of an epoch-2 that never got its checkpoint.
  class Killed(BaseException):
    pass

  real_save = checkpointing.save

  def save_then_die(mngr, epoch, *args):
    real_save(mngr, epoch, *args)
    mngr.wait_until_finished()
    raise Killed()

  monkeypatch.setattr(checkpointing, 'save', save_then_die)
  with pytest.raises(Killed):
    train.train_and_evaluate(config, str(tmp_path / 'r'), task)
  monkeypatch.setattr(checkpointing, 'save', real_save)
  metrics = tmp_path / 'r' / 'ce' / 'seed_0' / 'metrics.jsonl'
  assert len(_read(metrics).splitlines()) == 1
  with open(metrics, 'a') as f:
    f.write('{"epoch": 2, "train_loss": 123.0}\n')
  resumed = train.train_and_evaluate(config, str(tmp_path / 'r'), task)
  _assert_trees_equal(_params(ref_dir), _params(tmp_path / 'r'))
  assert resumed['runs'] == full['runs']
  for k in range(2):
    rel = os.path.join('ce', f'seed_{k}', 'metrics.jsonl')
    assert _read(tmp_path / 'r' / rel) == _read(ref_dir / rel)
  # Resuming with other data is refused.
  with pytest.raises(ValueError, match='another config or data'):
    train.train_and_evaluate(
        config, str(tmp_path / 'r'), synthetic_task(seed=1)
    )


def test_resume_after_kill_9(tmp_path, task, reference):
  """A real SIGKILL in a child process after the epoch-1 checkpoint."""
  ref_dir, _ = reference
  config = tiny_config()
  script = textwrap.dedent(f"""
      import os, signal, sys
      sys.path.insert(0, {REPO!r})
      sys.path.insert(0, {os.path.dirname(__file__)!r})
      from rlhf_tf.reward import checkpointing, train
      import test_reward_train as t
      real_save = checkpointing.save
      def save_then_kill(mngr, epoch, *args):
        real_save(mngr, epoch, *args)
        mngr.wait_until_finished()
        os.kill(os.getpid(), signal.SIGKILL)
      checkpointing.save = save_then_kill
      train.train_and_evaluate(t.tiny_config(), {str(tmp_path / 'k')!r},
                               t.synthetic_task())
      """)
  proc = subprocess.run(
      [sys.executable, '-c', script],
      capture_output=True,
      text=True,
      timeout=300,
  )
  assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
  train.train_and_evaluate(config, str(tmp_path / 'k'), task)
  _assert_trees_equal(_params(ref_dir), _params(tmp_path / 'k'))
  rel = os.path.join('ce', 'seed_1', 'metrics.jsonl')
  assert _read(tmp_path / 'k' / rel) == _read(ref_dir / rel)


def test_davidson_learns_ties_and_resumes_its_tie_parameter(
    tmp_path, task, reference, monkeypatch
):
  """L_D: the tie parameter is trained, reported, checkpointed, resumed."""
  config = tiny_config(
      num_epochs=12, losses=('davidson',), checkpoint_every_epochs=4
  )
  full = train.train_and_evaluate(config, str(tmp_path / 'full'), task)
  final = full['selected']['davidson']['final']
  assert final['heldout_accuracy'] >= 0.8, final
  nu0 = float(np.log(2))  # softplus(0): the initial value
  assert final['tie_nu'] > 0 and abs(final['tie_nu'] - nu0) > 1e-3
  assert final['tie_prob_at_equal'] == pytest.approx(
      final['tie_nu'] / (2 + final['tie_nu']), rel=1e-5
  )
  for key in (
      'train_davidson',
      'heldout_davidson',
      'heldout_davidson_tie_loglik',
      'heldout_tie_loglik',
  ):
    assert np.isfinite(final[key]), key
  assert 'tie_nu' not in reference[1]['runs']['ce']['seed_0']  # L_C: none

  class Killed(BaseException):
    pass

  real_save = checkpointing.save

  def save_then_die(mngr, epoch, *args):
    real_save(mngr, epoch, *args)
    raise Killed()

  monkeypatch.setattr(checkpointing, 'save', save_then_die)
  with pytest.raises(Killed):
    train.train_and_evaluate(config, str(tmp_path / 'r'), task)
  monkeypatch.setattr(checkpointing, 'save', real_save)
  resumed = train.train_and_evaluate(config, str(tmp_path / 'r'), task)
  assert resumed['runs'] == full['runs']  # tie_nu of every seed included
  _assert_trees_equal(
      _params(tmp_path / 'full', 'davidson'),
      _params(tmp_path / 'r', 'davidson'),
  )


def test_non_finite_loss_names_epoch_and_step(tmp_path, task):
  with pytest.raises(FloatingPointError, match=r'epoch 1, step \d+'):
    train.train_and_evaluate(
        tiny_config(learning_rate=1e38), str(tmp_path), task
    )


def test_selection_rules():
  rows = [
      [{'train_loss': 0.3, 'heldout_accuracy': 0.9}],
      [{'train_loss': 0.5, 'heldout_accuracy': 0.8}],
      [{'train_loss': 0.4, 'heldout_accuracy': 0.95}],
  ]
  assert train.select_run(rows, 'paper') == 1
  assert train.select_run(rows, 'heldout_accuracy') == 2
  with pytest.raises(ValueError, match='unknown selection'):
    train.select_run(rows, 'lowest')
  with pytest.raises(ValueError, match='needs heldout_accuracy'):
    train.select_run(
        [[{'train_loss': 1.0, 'heldout_accuracy': None}]], 'heldout_accuracy'
    )


def test_cosine_learning_rate_schedule_and_its_resume(
    tmp_path, task, reference
):
  config = tiny_config(lr_schedule='cosine', learning_rate=2e-3)
  steps = 7
  schedule = train.learning_rate_schedule(config, steps)
  total = config.num_epochs * steps
  for k in (0, 3, total // 2, total - 1, total):
    np.testing.assert_allclose(
        schedule(k), 2e-3 * 0.5 * (1 + np.cos(np.pi * k / total)), rtol=1e-6
    )
  constant = train.learning_rate_schedule(tiny_config(), steps)
  assert float(constant(total)) == 1e-3
  with pytest.raises(ValueError, match='lr_schedule'):
    train.learning_rate_schedule(tiny_config(lr_schedule='step'), steps)
  # Trained with it: other parameters than the constant-rate run's.
  one = tiny_config(lr_schedule='cosine', learning_rate=2e-3)
  train.train_and_evaluate(one, str(tmp_path / 'a'), task)
  ref_dir, _ = reference
  assert not np.array_equal(
      jax.tree_util.tree_leaves(_params(tmp_path / 'a'))[0],
      jax.tree_util.tree_leaves(_params(ref_dir))[0],
  )
  # The schedule spans num_epochs: another length is another run.
  with pytest.raises(ValueError, match='another config or data'):
    train.train_and_evaluate(
        tiny_config(lr_schedule='cosine', learning_rate=2e-3, num_epochs=3),
        str(tmp_path / 'a'),
        task,
    )


def test_param_ema_is_the_moving_average_of_every_step(task):
  """train_step's ema_params against the average recomputed from each
  step's parameters (numpy), the raw parameters unchanged by it."""
  config = tiny_config()
  model = model_lib.model_from_config(config.model)
  keys = train_step_lib.seed_keys(config)
  data = jax.tree_util.tree_map(jax.numpy.asarray, task)
  idx, weight = train_step_lib.epoch_indices(
      keys, 0, num_pairs=task.num_pairs, batch_size=32
  )
  kw = dict(model=model, loss_name='ce')
  plain = train_step_lib.init_states(keys, model=model, bins=task.bins)
  averaged = train_step_lib.init_states(
      keys, model=model, bins=task.bins, ema=True
  )
  expected = jax.tree_util.tree_map(np.asarray, plain.params)
  for b in range(3):
    args = (keys, idx[:, b], weight[:, b], data, 1e-2)
    plain, _ = train_step_lib.train_step(plain, *args, **kw)
    averaged, _ = train_step_lib.train_step(
        averaged, *args, **kw, ema_decay=0.75
    )
    expected = jax.tree_util.tree_map(
        lambda e, p: 0.75 * e + 0.25 * np.asarray(p), expected, plain.params
    )
  _assert_trees_equal(plain.params, averaged.params)
  for e, a in zip(
      jax.tree_util.tree_leaves(expected),
      jax.tree_util.tree_leaves(averaged.ema_params),
  ):
    np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-7)
  assert plain.ema_params == {}


def test_param_ema_run_saves_loads_and_resumes_its_average(
    tmp_path, task, reference, monkeypatch
):
  ref_dir, full = reference
  config = tiny_config(param_ema=0.9)
  run = train.train_and_evaluate(config, str(tmp_path / 'a'), task)
  # The same training (metrics of the raw parameters); the reward read
  # back is the average, not the last parameters.
  assert run['runs'] == full['runs']
  ckpt = str(tmp_path / 'a' / 'ce' / 'checkpoints')
  assert checkpointing.has_ema_params(ckpt, 2)
  assert not checkpointing.has_ema_params(
      str(ref_dir / 'ce' / 'checkpoints'), 2
  )
  assert not np.array_equal(
      _params(tmp_path / 'a')[0]['head']['kernel'],
      _params(ref_dir)[0]['head']['kernel'],
  )

  class Killed(BaseException):
    pass

  real_save = checkpointing.save

  def save_then_die(mngr, epoch, *args):
    real_save(mngr, epoch, *args)
    mngr.wait_until_finished()
    raise Killed()

  monkeypatch.setattr(checkpointing, 'save', save_then_die)
  with pytest.raises(Killed):
    train.train_and_evaluate(config, str(tmp_path / 'r'), task)
  monkeypatch.setattr(checkpointing, 'save', real_save)
  train.train_and_evaluate(config, str(tmp_path / 'r'), task)
  _assert_trees_equal(_params(tmp_path / 'a'), _params(tmp_path / 'r'))
  # Off (0) keeps the fingerprint of runs made before the option existed.
  old = tiny_config()
  del old['param_ema']
  assert train._fingerprint(tiny_config(), task) == train._fingerprint(
      old, task
  )
  with pytest.raises(ValueError, match='another config or data'):
    train.train_and_evaluate(tiny_config(), str(tmp_path / 'a'), task)
  with pytest.raises(ValueError, match='param_ema'):
    train.train_and_evaluate(
        tiny_config(param_ema=1.0), str(tmp_path / 'b'), task
    )
