"""ggflip's own prompt set: the `prompts` task's default source, so it runs offline.

Written for ggflip: short word problems with their numeric answers, facts with a one-word
answer, and instructions without one, as (id, question, answer or None). Each is asked as
`Question: ...\nAnswer:` (`EMBEDDED_TEMPLATE`) so a base model answers it; an answer is matched
as `ggflip.generate.extract` describes.
"""

from __future__ import annotations

EMBEDDED_TEMPLATE = "Question: {prompt}\nAnswer:"

DEFAULT_PROMPTS: tuple[tuple[str, str, str | None], ...] = (
    ("math-01", "A baker makes 12 muffins and sells 7 of them. How many muffins are left?", "5"),
    ("math-02", "Tom has 3 boxes with 8 pencils in each box. How many pencils does he have?", "24"),
    (
        "math-03",
        "A train travels 60 kilometres in one hour. How far does it travel in 4 hours?",
        "240",
    ),
    (
        "math-04",
        "Sara buys 2 books at 9 dollars each and pays with 20 dollars. What is her change?",
        "2",
    ),
    (
        "math-05",
        "There are 30 students in a class and half of them wear glasses. How many wear glasses?",
        "15",
    ),
    (
        "math-06",
        "A garden has 5 rows of 6 tomato plants. How many tomato plants are in the garden?",
        "30",
    ),
    (
        "math-07",
        "Ali read 14 pages on Monday and twice as many on Tuesday. How many pages in all?",
        "42",
    ),
    (
        "math-08",
        "A shop had 100 apples and sold 35, then 25 more. How many apples are left?",
        "40",
    ),
    (
        "math-09",
        "A rope 18 metres long is cut into 3 equal pieces. How long is each piece in metres?",
        "6",
    ),
    (
        "math-10",
        "Mia saves 5 dollars every week. How many dollars has she saved after 9 weeks?",
        "45",
    ),
    ("math-11", "A box holds 4 cakes. How many boxes are needed for 22 cakes?", "6"),
    (
        "math-12",
        "Ben is 7 and his sister is 3 years older. How old will she be in 5 years?",
        "15",
    ),
    ("fact-01", "What is the capital of France?", "Paris"),
    ("fact-02", "How many days are there in a week?", "7"),
    ("fact-03", "What is the chemical symbol for water?", "H2O"),
    ("fact-04", "Which planet is known as the Red Planet?", "Mars"),
    ("fact-05", "How many legs does a spider have?", "8"),
    ("fact-06", "What is the largest ocean on Earth?", "Pacific"),
    ("fact-07", "Who wrote the play Romeo and Juliet?", "Shakespeare"),
    ("fact-08", "What is the boiling point of water in degrees Celsius at sea level?", "100"),
    ("fact-09", "What language is mostly spoken in Brazil?", "Portuguese"),
    ("fact-10", "How many continents are there?", "7"),
    ("task-01", "Write one sentence describing a sunny morning.", None),
    ("task-02", "List three fruits that are yellow.", None),
    ("task-03", "Explain in two sentences why the sky looks blue.", None),
    ("task-04", "Give a short tip for remembering people's names.", None),
    ("task-05", "Translate 'good night' into Spanish.", None),
    ("task-06", "Write a four-line poem about the sea.", None),
    ("task-07", "Describe a cat to someone who has never seen one, in two sentences.", None),
    ("task-08", "Suggest a name for a small coffee shop and say why.", None),
)
