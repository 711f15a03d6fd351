"""Every case of the bad-input corpus (tests/bad_input_corpus.py) fails with
its own error type, an InputError, and a message naming the file, config key,
polygon or field at fault -- never a raw numpy / pydicom / jax error."""

import warnings

from bad_input_corpus import CASES, kinds
import pytest

from rlhf_tf.input_error import InputError


def test_the_corpus_covers_100_kinds_of_bad_input():
  counts = kinds()
  assert len(CASES) >= 100, counts
  assert len({c.name for c in CASES}) == len(CASES)  # all different
  assert set(counts) == {
      'dicom',
      'inv3',
      'polygon',
      'actions',
      'config',
      'vote',
  }


@pytest.mark.parametrize(
    'case', CASES, ids=[f'{c.kind}: {c.name}' for c in CASES]
)
def test_bad_input_names_what_is_wrong(case, tmp_path):
  call = case.build(tmp_path)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # skipped-file notes are not the point
    with pytest.raises(case.error) as info:
      call()
  err = info.value
  # One of the project's input errors (launch.py prints it as one line);
  # missing files stay the built-in FileNotFoundError, which names them.
  assert isinstance(err, (InputError, FileNotFoundError)), type(err)
  message = str(err)
  assert case.needle(tmp_path) in message, message
  assert 'Traceback' not in message
