"""Synthetic answers near an IFEval prompt's constraints, for benchmarks/ifeval_agreement.py.

Each answer starts from a base text of random sentences and paragraphs, then, for each of the prompt's
instructions, either meets the constraint, misses it by one (one keyword too few, one bullet too many, a
word count one below the threshold ...) or leaves it alone, and finally may get noise that the loose score
forgives or that trips edge cases (a chatty first line, a closing line, ``**bold**`` markers, quotes, upper
or lower case, code fences). Pure Python, no alignkit import (it runs beside the reference too).
"""

from __future__ import annotations

import json
import random
import re

SENTENCES = [
    "The river runs past the old mill, and the children wave at the boats.",
    "Nobody expected the meeting to last three hours.",
    "Dr. Smith arrived at 5 p.m. with the report.",
    "Is this the right way to the station?",
    "What a wonderful day it was!",
    "Prices rose by 3.5 percent in the U.S. last year.",
    "We should plan the trip carefully; the roads are narrow.",
    'She said "thank you" and left.',
    "In my opinion, the best approach is to start small.",
    "The committee, however, did not agree.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Learning a language takes time... but it is worth it.",
    "The CEO of NASA spoke to the UN about AI and the ISS.",
    "Don't forget to bring your umbrella, it's going to rain.",
    "Here is a list of ideas: apples, pears, and plums.",
    "I can't believe it's already December.",
]
OTHER_LANGUAGES = {
    "fr": "Le chat dort sur le canapé pendant que la pluie tombe doucement sur la ville.",
    "de": "Der Hund spielt im Garten, während die Kinder in der Schule lernen.",
    "it": "La pizza napoletana è famosa in tutto il mondo per il suo sapore unico.",
    "pt": "O menino foi à praia com os seus pais e nadou no mar durante a tarde.",
    "ru": "Вчера мы ходили в театр и смотрели очень интересный спектакль.",
    "hi": "मेरा नाम राहुल है और मैं दिल्ली में रहता हूँ।",
    "ko": "오늘은 날씨가 정말 좋아서 공원에 산책하러 갔습니다.",
    "ar": "ذهبت إلى السوق لشراء الخبز والفواكه الطازجة.",
    "vi": "Hôm nay tôi đi học và gặp rất nhiều bạn mới.",
    "fi": "Talvella järvi jäätyy ja ihmiset luistelevat sen päällä.",
}
NOISE_FIRST = ["Sure! Here is my answer:", "**Answer**", "Of course, here you go.", "```"]
NOISE_LAST = ["I hope this helps!", "Let me know if you need more.", "```", "*Note: this is a draft.*"]


def near(rng: random.Random, n: int) -> int:
    """The threshold, one below or one above (never negative)."""
    return max(0, n + rng.choice((-1, 0, 0, 1)))


def base(rng: random.Random, prompt: str) -> str:
    pool = SENTENCES + [s for s in re.split(r"(?<=[.!?])\s+", prompt) if len(s.split()) > 3]
    paragraphs = [
        " ".join(rng.choice(pool) for _ in range(rng.randint(1, 4))) for _ in range(rng.randint(1, 4))
    ]
    return rng.choice(["\n\n", "\n", "\n\n***\n\n"]).join(paragraphs)


def insert(rng: random.Random, text: str, word: str) -> str:
    words = text.split(" ")
    words.insert(rng.randint(0, len(words)), word)
    return " ".join(words)


def mutate(rng: random.Random, text: str, name: str, kw: dict, prompt: str) -> str:  # noqa: C901
    """``text`` changed to meet, nearly meet or break instruction ``name`` (one of IFEval's 25)."""
    kind = name.split(":")[1]
    if kind == "existence":
        for k in kw["keywords"]:
            if rng.random() < 0.8:
                text = insert(rng, text, rng.choice([k, k.upper(), k.capitalize(), k + "s"]))
    elif kind == "frequency":
        text = re.sub(re.escape(kw["keyword"]), "", text, flags=re.I)
        for _ in range(near(rng, kw["frequency"])):
            text = insert(rng, text, rng.choice([kw["keyword"], kw["keyword"].title()]))
    elif kind == "forbidden_words":
        for w in kw["forbidden_words"]:
            if rng.random() < 0.3:
                text = insert(rng, text, rng.choice([w, w.upper(), w + "ing", "pre" + w]))
    elif kind == "letter_frequency":
        letter = kw["letter"].lower()
        text = re.sub(re.escape(letter), "", text, flags=re.I)
        text += " " + " ".join(letter * 1 for _ in range(near(rng, kw["let_frequency"])))
    elif kind == "response_language":
        text = rng.choice(
            [OTHER_LANGUAGES.get(kw["language"], text), text, rng.choice(list(OTHER_LANGUAGES.values()))]
        )
    elif kind == "number_sentences":
        text = " ".join(rng.choice(SENTENCES) for _ in range(max(1, near(rng, kw["num_sentences"]))))
    elif kind == "number_paragraphs":
        n = max(1, near(rng, kw["num_paragraphs"]))
        text = rng.choice(["\n\n***\n\n", "\n***\n", " *** ", "***"]).join(
            rng.choice(SENTENCES) for _ in range(n)
        )
        text = rng.choice(["", "***\n"]) + text + rng.choice(["", "\n***", "\n***\n***"])
    elif kind == "number_words":
        words = " ".join(rng.choice(SENTENCES) for _ in range(kw["num_words"] // 5 + 2)).split()
        text = " ".join(words[: near(rng, kw["num_words"])])
    elif kind == "nth_paragraph_first_word":
        count = kw["num_paragraphs"] if rng.random() < 0.6 else near(rng, kw["num_paragraphs"])
        paragraphs = [rng.choice(SENTENCES) for _ in range(max(1, count))]
        n = kw["nth_paragraph"] - 1
        if n < len(paragraphs) and rng.random() < 0.85:
            first = rng.choice(
                [kw["first_word"], kw["first_word"].title(), f'"{kw["first_word"]}', f"{kw['first_word']},"]
            )
            paragraphs[n] = first + " " + paragraphs[n]
        text = rng.choice(["\n\n", "\n\n", "\n\n\n\n", "\n"]).join(paragraphs)
    elif kind == "number_placeholders":
        for _ in range(near(rng, kw["num_placeholders"])):
            text = insert(rng, text, rng.choice(["[name]", "[address]", "[date of birth]", "[ ]"]))
    elif kind == "postscript":
        text += rng.choice(
            [
                "\n\nP.S. See you soon.",
                "\n\np.s. bye",
                "\nP. S. later",
                "\n\nP.P.S. one more",
                "\nPS no dots",
                "",
            ]
        )
    elif kind == "number_bullet_lists":
        bullets = [
            rng.choice(["* ", "- ", "  * ", "*"]) + rng.choice(SENTENCES)
            for _ in range(near(rng, kw["num_bullets"]))
        ]
        text = text + "\n" + "\n".join(bullets) + rng.choice(["", "\n** not a bullet **", "\n---"])
    elif kind == "constrained_response":
        text = rng.choice(
            [
                "My answer is yes.",
                "My answer is no.",
                "My answer is maybe.",
                "My answer is Yes.",
                "my answer is no.",
            ]
        ) + rng.choice(["", " " + text])
    elif kind == "number_highlighted_sections":
        for _ in range(near(rng, kw["num_highlights"])):
            text = insert(
                rng, text, rng.choice(["*important part*", "**bold part**", "* *", "*a\nb*", "***triple***"])
            )
    elif kind == "multiple_sections":
        sp = kw["section_spliter"]
        n = near(rng, kw["num_sections"])
        text = "\n\n".join(
            f"{rng.choice([sp, sp.upper(), sp.lower()])} {i + 1}\n{rng.choice(SENTENCES)}" for i in range(n)
        )
    elif kind == "json_format":
        body = json.dumps({"answer": text})
        text = rng.choice(
            [
                body,
                f"```json\n{body}\n```",
                f"```\n{body}\n```",
                f"```JSON\n{body}```",
                body[:-1],
                f"Here: {body}",
            ]
        )
    elif kind == "title":
        text = rng.choice(["<<A Title>>\n", "<< >>\n", "<<split\ntitle>>\n", "<<<Deep>>>\n", ""]) + text
    elif kind == "two_responses":
        other = rng.choice([text, base(rng, prompt)])
        text = rng.choice(
            [
                f"{text}\n******\n{other}",
                f"{text}\n******\n\n******\n{other}",
                f"******\n{text}\n******\n{other}\n******",
                f"{text}\n******\n{other}\n******\n{text}",
            ]
        )
    elif kind == "repeat_prompt":
        request = kw["prompt_to_repeat"]
        text = rng.choice([request, request.upper(), request[:-1], "  " + request, ""]) + "\n" + text
    elif kind == "end_checker":
        text = (
            text
            + " "
            + rng.choice(
                [
                    kw["end_phrase"],
                    f'"{kw["end_phrase"]}"',
                    kw["end_phrase"].lower(),
                    kw["end_phrase"] + " Bye.",
                    kw["end_phrase"] + "  \n",
                ]
            )
        )
    elif kind == "quotation":
        text = rng.choice([f'"{text}"', f'  "{text}"\n', f"“{text}”", f'"{text}', text])
    elif kind == "capital_word_frequency":
        words = text.split(" ")
        target = near(rng, kw["capital_frequency"])
        for i in rng.sample(range(len(words)), min(target, len(words))):
            words[i] = words[i].upper()
        text = " ".join(words)
    elif kind == "english_capital":
        text = text.upper() if rng.random() < 0.7 else text
    elif kind == "english_lowercase":
        text = text.lower() if rng.random() < 0.7 else text
    elif kind == "no_comma":
        text = text.replace(",", "") if rng.random() < 0.6 else text
    return text


def noise(rng: random.Random, text: str) -> str:
    """Loose-score noise and edge cases, each with a small probability."""
    if rng.random() < 0.25:
        text = rng.choice(NOISE_FIRST) + "\n" + text
    if rng.random() < 0.25:
        text = text + "\n" + rng.choice(NOISE_LAST)
    if rng.random() < 0.1:
        text = text.replace("the ", "**the** ")
    if rng.random() < 0.05:
        text = rng.choice(["", "   ", "\n", "*", '""'])
    return text


def synthetic_answers(record: dict, rng: random.Random, count: int) -> list[str]:
    """``count`` answers to ``record`` (its ``prompt``, ``instruction_id_list`` and ``kwargs``)."""
    answers = []
    for _ in range(count):
        text = base(rng, record["prompt"])
        for name, kw in zip(record["instruction_id_list"], record["kwargs"], strict=True):
            kw = {k: v for k, v in (kw or {}).items() if v is not None}
            if rng.random() < 0.85:
                text = mutate(rng, text, name, kw, record["prompt"])
        answers.append(noise(rng, text))
    return answers
