"""TensorBoard event files hold the metrics.jsonl numbers."""

import pytest

from rlhf_tf.reward import tensorboard


def test_event_files_round_trip_the_metric_rows(tmp_path):
  rows = [
      dict(
          epoch=e + 1,
          step=10 * (e + 1),
          train_loss=1.0 / (e + 1),
          heldout_accuracy=0.5 + 0.1 * e,
          note='text is skipped',
      )
      for e in range(3)
  ]
  out = tensorboard.write_events(str(tmp_path), rows)
  got = tensorboard.read_scalars(out)
  assert sorted({t for t, _, _ in got}) == ['heldout_accuracy', 'train_loss']
  loss = sorted((s, v) for t, s, v in got if t == 'train_loss')
  assert [s for s, _ in loss] == [1, 2, 3]
  assert [v for _, v in loss] == pytest.approx([1.0, 0.5, 1 / 3], rel=1e-6)
  # Rewriting replaces the old events instead of appending duplicates.
  tensorboard.write_events(str(tmp_path), rows[:1])
  assert len(tensorboard.read_scalars(out)) == 2
