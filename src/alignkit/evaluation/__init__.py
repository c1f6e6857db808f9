"""Evaluation of policies by transparent rules: habits of over-optimisation, refusals against human labels."""
