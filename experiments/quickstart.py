"""The whole paper pipeline on the built-in phantom (the README's command).

  python launch.py --experiment=experiments/quickstart.py \
      --workdir=workdir/quickstart

Actions (10 expert, 200 random, 40 augmented), 4,000 simulated preferences
(591 ties = 14.8 %, the paper's rate: 613 / 4,000), the reward model with
three losses (L_C, L_L and L_D, which models ties) x 3 seeds, then the
evaluation: Fig. 2-4, reliability diagram, the ties-closer figure, tie-aware
held-out numbers, gradient probing and evaluation/summary.json. Expected on
2 CPU cores: <= 10 minutes (about 3); held-out decisive accuracy >= 0.9 for
every loss; three-way accuracy (tie threshold tuned on the validation half)
>= 0.9 for L_C and L_D; Spearman rho between reward and the simulated
inspector's score over 2,000 unseen random actions >= 0.8 for the better
loss; reward ascent reaching >= 90 % of the expert's inspector score.
Args: '' | 'paper' (the paper's 50 random actions: the model then ranks
unseen random actions with rho ~ 0.6 only, see rlhf_tf/jobs/evaluate.py) |
'smoke' (every size tiny, about half a minute).
"""

from rlhf_tf.jobs import quickstart


def get_config(arg=None):
  if arg not in (None, '', 'smoke', 'paper'):
    raise ValueError(f'unknown arg {arg!r}; valid: paper, smoke')
  return quickstart.experiment_config(smoke=arg == 'smoke',
                                      paper_actions=arg == 'paper')
