"""General chat requests for the router's `general` domain: what the generalist should take, never a specialist.

A seeded template generator: greetings, knowledge questions, writing, maths word problems, advice, trivia. Each
template fills its slots from small word lists with a `random.Random(seed)`, so the same seed gives the same rows
in any process. A row's group is its template (`general/t<k>`): a template's rows stay on one side of the
train/heldout split, so the heldout rows are phrasings the router never saw. No tools are offered (a chat
request). It reads no file and runs no model; evals/router_data.py adds these rows to the labelled set.
"""
from __future__ import annotations

import random

SLOTS = {
    "greet": ["hi", "hey there", "good morning", "hiya", "greetings", "yo", "good evening", "howdy"],
    "country": ["Japan", "Brazil", "Kenya", "Canada", "Norway", "Peru", "Egypt", "Vietnam", "Chile", "Poland"],
    "thing": ["photosynthesis", "inflation", "black holes", "the immune system", "democracy", "gravity",
              "volcanoes", "the stock market crash of 1929", "plate tectonics", "vaccines", "rainbows"],
    "person": ["Marie Curie", "Napoleon", "Ada Lovelace", "Gandhi", "Cleopatra", "Einstein", "Frida Kahlo",
               "Beethoven", "Nelson Mandela", "Galileo"],
    "topic": ["autumn", "the sea", "friendship", "a lost cat", "city lights", "my grandmother", "coffee",
              "the first day of school", "a rainy Monday", "space travel"],
    "form": ["poem", "haiku", "short story", "limerick", "song verse", "toast", "thank-you note"],
    "food": ["lasagna", "pancakes", "a vegetable curry", "sourdough", "chocolate chip cookies", "risotto",
             "guacamole", "a lemon tart"],
    "name": ["Ana", "Tom", "Priya", "Kenji", "Lena", "Omar", "Sofia", "Max"],
    "fruit": ["apples", "oranges", "pears", "mangoes", "plums"],
    "sport": ["football", "tennis", "basketball", "cricket", "rugby", "the Olympics", "chess"],
    "book": ["Pride and Prejudice", "Moby Dick", "War and Peace", "The Odyssey", "Macbeth", "Don Quixote"],
    "skill": ["learn Spanish", "sleep better", "run a marathon", "stop procrastinating", "make friends in a new "
              "city", "save money", "prepare for a job interview"],
    "animal": ["octopus", "elephant", "penguin", "honeybee", "wolf", "dolphin"],
}

TEMPLATES = (
    "{greet}", "{greet}!", "{greet}, how are you today?", "{greet}, what can you do?", "thanks, that was helpful",
    "what is the capital of {country}?", "what language do people speak in {country}?",
    "how big is the population of {country}", "explain {thing} in simple terms", "why does {thing} happen?",
    "give me a short summary of {thing}", "who was {person}?", "what is {person} best known for",
    "tell me three facts about {person}", "write a {form} about {topic}", "can you write me a {form} about {topic}",
    "compose a {form} on the theme of {topic}", "how do I make {food}?", "what do I need to cook {food}",
    "give me a recipe for {food} for four people",
    "{name} has {a} {fruit} and gives {b} to a friend. How many are left?",
    "if a train travels {a} km in {b} hours, what is its average speed?",
    "{name} buys {a} notebooks at {b} dollars each. How much does {name} pay?",
    "what is {a} times {b}", "a rectangle is {a} cm by {b} cm; what is its area?",
    "who won the last {sport} championship?", "explain the rules of {sport}", "what is the plot of {book}?",
    "who wrote {book}", "any tips to {skill}?", "how can I {skill}", "tell me something funny about the {animal}",
    "how long does an {animal} live", "tell me a joke about {topic}", "recommend a movie for a quiet evening",
    "translate 'good night' into the language of {country}", "what's the weather usually like in {country} in "
    "winter?", "what should I read after {book}?", "is it healthy to eat {food} every day?",
    "help me write an email to {name} saying I will be late",
)


def general_requests(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` (text, group) pairs: templates in turn, slots drawn with a Random(seed); duplicates dropped."""
    rng = random.Random(seed)
    out, seen = [], set()
    for k in range(n * 3):
        if len(out) == n:
            break
        index = k % len(TEMPLATES)
        values = {slot: rng.choice(words) for slot, words in SLOTS.items()}
        text = TEMPLATES[index].format(a=rng.randint(2, 90), b=rng.randint(2, 9), **values)
        if rng.random() < 0.3:
            text = text[:1].upper() + text[1:]
        if text not in seen:
            seen.add(text)
            out.append((text, f"general/t{index}"))
    return out
