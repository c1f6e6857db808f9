"""Trainers: one module per algorithm, a thin shared loop (`loop`) where it truly repeats.

- ``rm`` (+ ``rm_config``): reward models from pairs and rankings (the model and its data live in
  `alignkit.rewards`: ``model``, ``comparisons``);
- ``online``: the online RL loop (``loop``, ``rollout``, ``experience``, ``advantages``, ``models``,
  ``distributed``, ``config``) with PPO (``ppo``) as its algorithm: policy, value, reward and reference
  on one base;
- ``dpo`` (+ ``dpo_config``, ``dpo_shared_prompt``), ``kto`` (+ ``kto_config``), ``sft`` (+ ``sft_config``)
  on TRL's trainers, with ``trl`` (``setup``, ``data``, ``policy``, ``callback``, ``report``, ``run``): what
  they share;
- ``loop``: optimizer and schedule, length-grouped batches, NaN guard; ``checkpoints``: save/resume;
  ``memory``: activation budget, heap trimming; ``processes``: accelerate state between commands.

Modules are imported on use (not here) so that `alignkit --help` stays fast.
"""
