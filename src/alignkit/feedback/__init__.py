"""Preferences from people (`alignkit label`) and from AI judges (`alignkit judge`).

Both write the same append-only label file (`alignkit.feedback.store`), which the trainers read through
the loaders (`alignkit.data.labels`).

Modules: ``items`` (candidates in), ``store`` (the label file), ``label`` (terminal UI), ``judge`` (the
`judge` command: picks a judge, runs the swap), ``judges`` (``base``: inputs, verdicts and how two orders
combine; ``local``, ``http`` and ``simulated``: the judges), ``templates`` (principles), ``stats``
(``label --stats``), ``config`` (the options of both commands).
"""
