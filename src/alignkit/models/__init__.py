"""Loading models: names → checkpoints (registry), LoRA adapters (lora), scalar heads (heads).

This package is the only place that loads tokenizers and models; trainers, the sampler, the judge and
evaluation go through it.
"""
