"""Trainers: one module per algorithm, a thin shared loop (`loop`) where it truly repeats.

- ``rm`` (+ ``rm_config``, ``rm_data``, ``reward_model``): reward models from pairs and rankings;
- ``ppo`` (+ ``ppo_*``): PPO with policy, value, reward and reference on one base;
- ``loop``: optimizer and schedule, length-grouped batches, NaN guard; ``checkpoints``: save/resume;
  ``memory``: activation budget, heap trimming; ``processes``: accelerate state between commands;
- ``trl`` (``dpo``, ``kto``, ``sft``): what the TRL-backed trainers share.

Modules are imported on use (not here) so that `alignkit --help` stays fast.
"""
