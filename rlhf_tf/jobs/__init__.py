"""The jobs `launch.py` can run: one explicit dict, name -> fn(config,
workdir), and the ones that may run in several processes / hosts."""

from rlhf_tf.jobs import (
    agent,
    collect,
    evaluate,
    inspect_volume,
    label_protocols,
    multiscene,
    propose,
    quickstart,
    render,
    reward,
    simulate,
)

JOBS = {
    'collect': collect.run,
    'build_actions': simulate.build_actions,
    'evaluate': evaluate.evaluate,
    'inspect': inspect_volume.run,
    'label_protocols': label_protocols.run,
    'multiscene': multiscene.run,
    'propose': propose.run,
    'quickstart': quickstart.run,
    'render': render.run,
    'simulate_preferences': simulate.simulate_preferences,
    'train_agent': agent.train_agent,
    'train_reward': reward.train_reward,
}

# Written for several processes (jax.distributed): every process computes,
# process 0 alone writes, barriers order its writes before the others'
# reads. launch.py refuses the other jobs in a multi-process run.
MULTI_PROCESS_JOBS = frozenset(
    {
        'build_actions',
        'evaluate',
        'quickstart',
        'simulate_preferences',
        'train_agent',
        'train_reward',
    }
)
