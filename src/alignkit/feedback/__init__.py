"""Preferences from people (`alignkit label`) and from AI judges (`alignkit judge`).

Both write the same append-only label file (`alignkit.feedback.store`), which the trainers read.

Modules: ``items`` (candidates in), ``store`` (the label file), ``label`` (terminal UI), ``judge`` (AI
feedback driver and swap logic) with ``judge_local`` and ``judge_http``, ``templates`` (principles),
``stats`` (``label --stats``), ``config`` (the options of both commands).
"""
