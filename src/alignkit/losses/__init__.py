"""Loss and advantage maths as pure functions: tensors in, tensors out.

Losses return ``(loss, stats)``: ``loss`` is a 0-d tensor that carries the
gradient, ``stats`` maps namespaced metric names (``reward/accuracy``,
``ppo/clipfrac``, ...) to *detached* 0-d tensors. Stats stay tensors so that a
trainer can average or gather them across devices before calling ``.item()``
once per logging step (a ``.item()`` here would force a device sync per metric).

Helpers (masked means, GAE, KL estimators, log-probabilities) return plain
tensors. Nothing here touches a model, an optimiser or a file.
"""
