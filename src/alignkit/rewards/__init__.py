"""Rewards: everything that turns a (prompt, answer) into a score.

- `model`: the reward model itself (a decoder + LoRA adapter and a scalar head), its
  saved layout, loading (`load_reward_model`) and export.
- `comparisons`: reward-model data: preference pairs and rankings → token ids →
  padded training and evaluation batches.
- `ensemble`: several scorers as one reward (weighted sum, minimum or a safety gate),
  `RewardSet` and `load_reward_set`, and the parsing of ``NAME=DIR`` specs.
- `encoding`: text and token encoding shared by the others: chat-template rendering,
  re-tokenising for a reward model on another tokenizer, tokenizer fingerprints, padding.
- `functions`: Python reward functions with TRL's signature (``FILE.py:NAME`` / ``MODULE:NAME``),
  their result checks, record columns as keywords, and their `RewardSet` member.
- `verifiers`: built-in rule rewards chosen by name (``math``, ``length``, ``ifeval``); docs/rewards.md.
"""
