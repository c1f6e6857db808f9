"""Loss and advantage maths as pure functions: tensors in, tensors out.

Losses return ``(loss, stats)``: ``loss`` is a 0-d tensor that carries the
gradient, ``stats`` maps namespaced metric names (``reward/accuracy``,
``ppo/clipfrac``, ...) to *detached* 0-d tensors. Stats stay tensors so that a
trainer can average or gather them across devices before calling ``.item()``
once per logging step (a ``.item()`` here would force a device sync per metric).

Helpers (masked means, GAE, KL estimators, log-probabilities) return plain
tensors. Nothing here touches a model, an optimiser or a file, and nothing here
imports the rest of alignkit.

Modules:

- ``reward``: reward-model losses (Bradley-Terry pairs, K-way rankings, reward centering).
- ``ppo``: the PPO-clip policy loss and the clipped value loss.
- ``group``: critic-free, sequence-level advantages over groups of answers (GRPO, RLOO, REINFORCE++).
- ``policy_gradient``: the clipped token loss with asymmetric clipping, its aggregations
  (grpo, bnpo, dr_grpo, dapo) and GRPO's k3 KL term.
- ``advantages``: rewards to advantages (per-token KL-shaped rewards, GAE,
  running reward moments, reward clipping).
- ``kl``: per-token KL estimators, the fixed and adaptive KL controllers, and
  best-of-n's KL bound (torch-free).
- ``masked``: masked mean, variance and whitening.
- ``logits``: entropy and log-probabilities from logits, chunked in float32.
"""
