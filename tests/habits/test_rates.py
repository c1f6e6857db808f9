"""`habit_rates`: stable habit names and the fraction of answers showing each."""

from __future__ import annotations

from alignkit.habits.rates import HABITS, habit_rates


def test_habit_rates_keys_and_values():
    texts = [
        "I'm sorry, but I can't help with that.",
        "As an AI language model, I think Python is fine. I hope this helps!",
        "Paris is the capital of France.",
        "Steps:\n1. Boil water.\n2. Add pasta.\n\nIn summary, boil and add pasta.",
    ]
    rates = habit_rates(texts)
    assert list(rates) == ["refusal", "apology", "ai_disclaimer", "list_summary_padding", "trailing_filler"]
    assert list(rates) == list(HABITS)
    assert rates == {
        "refusal": 0.25,
        "apology": 0.25,
        "ai_disclaimer": 0.25,
        "list_summary_padding": 0.25,
        "trailing_filler": 0.25,
    }


def test_habit_rates_of_nothing_is_zero():
    assert habit_rates([]) == dict.fromkeys(HABITS, 0.0)
