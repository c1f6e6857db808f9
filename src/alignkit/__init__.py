"""alignkit: align language models with human preferences (reward models, PPO, DPO, KTO, best-of-n)."""

__version__ = "0.1.0"
