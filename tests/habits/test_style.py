"""The style habit rules on hand-written answers: apologies, AI disclaimers, list-and-summary padding, filler."""

from __future__ import annotations

from alignkit.habits.style import (
    has_ai_disclaimer,
    has_apology,
    has_list_summary_padding,
    has_trailing_filler,
)


def test_apology():
    assert has_apology("I apologize for the confusion: the function is `len`, not `size`.")
    assert has_apology("Sorry, I misread your question. Here is the corrected version.")
    assert has_apology("You are right, my apologies. The answer is 12.")
    assert not has_apology("I'm sorry to hear about your loss. Here is how to write a eulogy.")
    assert not has_apology("The word 'sorry' comes from Old English 'sarig'.")
    assert not has_apology("Here is the answer: 42.")


def test_ai_disclaimer():
    assert has_ai_disclaimer("As an AI language model, I can't taste food, but here is a recipe.")
    assert has_ai_disclaimer("I'm just an AI, so take this with a grain of salt.")
    assert has_ai_disclaimer("I don't have personal opinions, but many people prefer Python for scripting.")
    assert not has_ai_disclaimer("AI language models are trained on large amounts of text.")
    assert not has_ai_disclaimer("As an engineer, you will often trade speed for memory.")


def test_list_summary_padding():
    padded = "Three tips:\n1. Sleep well.\n2. Eat vegetables.\n3. Walk daily.\n\nIn summary, sleep, eat well and walk."
    assert has_list_summary_padding(padded)
    assert has_list_summary_padding(padded.replace("In summary", "Overall"))
    bullets = "- fast\n- small\n- cheap\n\nIn conclusion, it is fast, small and cheap."
    assert has_list_summary_padding(bullets)
    assert not has_list_summary_padding("Three tips:\n1. Sleep well.\n2. Eat vegetables.\n3. Walk daily.")
    assert not has_list_summary_padding("In summary, the function returns None.")
    # a summary word before the list is an introduction, not padding
    assert not has_list_summary_padding("Overall, two options:\n- rsync\n- scp")


def test_trailing_filler():
    assert has_trailing_filler("The answer is 4!!!")
    assert has_trailing_filler("Is that really right???")
    assert has_trailing_filler("Please, please tell me if it works.")
    assert has_trailing_filler("Use a tripod. I hope this helps!")
    assert has_trailing_filler("Done. Let me know if you have any other questions.")
    assert has_trailing_filler("Enjoy the trip 😊😊😊")
    assert has_trailing_filler("Enjoy the trip! Have fun! Have fun! Have fun!")
    assert not has_trailing_filler("Please note that `rm -rf` deletes files for good. Use `trash` instead.")
    assert not has_trailing_filler("The answer is 4! Multiply first, then add.")
    assert not has_trailing_filler("")
