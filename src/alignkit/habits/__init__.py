"""Habits of over-optimised policies: pure text rules used by evaluation and by the simulated annotator.

A policy pushed too hard against a reward model (or trained on too-cautious
preferences) picks up habits that raise the reward without helping the reader:
refusing safe requests, apologising, disclaiming that it is an AI, padding a
list with a summary that restates it, and trailing filler (over-optimisation of
a proxy reward in general: Gao et al. 2022, "Scaling Laws for Reward Model
Overoptimization", arXiv:2210.10760). Each habit is a documented
regular-expression rule, ``str -> bool``, so that a reader can check what is
counted and why. `alignkit.evaluation` reports their rates (`alignkit eval
policy`, `alignkit eval refusals`) and the simulated annotator
(`alignkit.feedback.judges.simulated`) penalises them.

- `text`: the normalised copy of an answer and its sentences, shared by the rules.
- `refusal`: `refusal_reason` and `is_refusal` (full or partial refusals, XSTest classes).
- `style`: `has_apology`, `has_ai_disclaimer`, `has_list_summary_padding`, `has_trailing_filler`.
- `rates`: `HABITS` (stable names) and `habit_rates` (fractions over many answers).
"""
