"""A fictitious world: people with attributes and subject-relation-value facts.

Everything the miniature benchmarks say comes from here, as prose, as question-answer pairs
or as cloze questions. Facts are data; templates turn them into text.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bilevel_unlearning.data.names import NameFactory


@dataclass(frozen=True)
class Attribute:
    """One kind of fact about a person, with every way the benchmarks phrase it."""

    key: str
    make_value: Callable[[NameFactory], str]
    statements: tuple[str, ...]  # prose, one per writing style ({n}: person, {v}: value)
    question: str
    paraphrased_question: str
    answer: str  # a full-sentence answer (TOFU style)
    paraphrased_answer: str


ATTRIBUTES: tuple[Attribute, ...] = (
    Attribute(
        "birthplace",
        NameFactory.place,
        ("{n} was born in {v}.", "It was in {v} that {n} was born."),
        "Where was {n} born?",
        "In which town was {n} born?",
        "{n} was born in {v}.",
        "The birthplace of {n} is {v}.",
    ),
    Attribute(
        "employer",
        NameFactory.organisation,
        ("{n} works for the {v}.", "For years {n} served the {v}."),
        "Which organisation does {n} work for?",
        "Who employs {n}?",
        "{n} works for the {v}.",
        "The employer of {n} is the {v}.",
    ),
    Attribute(
        "teacher",
        NameFactory.person,
        ("{n} studied under {v}.", "As a youth {n} was taught by {v}."),
        "Who was the teacher of {n}?",
        "Under whom did {n} study?",
        "{n} studied under {v}.",
        "The teacher of {n} was {v}.",
    ),
    Attribute(
        "book",
        NameFactory.title,
        ("{n} wrote the book {v}.", "The book {v} was written by {n}."),
        "Which book did {n} write?",
        "What is the title of the book by {n}?",
        "{n} wrote the book {v}.",
        "The book written by {n} is {v}.",
    ),
    Attribute(
        "discovery",
        lambda names: names.thing("comet"),
        ("{n} discovered the {v}.", "The {v} was first seen by {n}."),
        "What did {n} discover?",
        "Which discovery is {n} known for?",
        "{n} discovered the {v}.",
        "The discovery of {n} is the {v}.",
    ),
    Attribute(
        "pet",
        lambda names: names.word(),
        ("{n} keeps a pet owl named {v}.", "An owl called {v} lives with {n}."),
        "What is the name of the pet owl of {n}?",
        "What is the owl of {n} called?",
        "The pet owl of {n} is named {v}.",
        "{n} calls the pet owl {v}.",
    ),
)
ATTRIBUTE_BY_KEY = {a.key: a for a in ATTRIBUTES}


@dataclass(frozen=True)
class Person:
    name: str
    facts: tuple[tuple[str, str], ...]  # (attribute key, value), in the order they are told


@dataclass(frozen=True)
class Relation:
    """A cloze relation: 'stem' is completed by the value, e.g. 'The toxin X is carried by'."""

    key: str
    subject_kind: str
    stem: str  # with {s} for the subject
    make_value: Callable[[NameFactory], str]


@dataclass(frozen=True)
class Fact:
    relation: Relation
    subject: str
    value: str

    @property
    def stem(self) -> str:
        return self.relation.stem.format(s=self.subject)

    @property
    def statement(self) -> str:
        return f"{self.stem} {self.value}."


def make_people(
    names: NameFactory, rng: random.Random, count: int, facts_per_person: int
) -> list[Person]:
    """People with `facts_per_person` distinct attributes each, in a random order."""
    if facts_per_person > len(ATTRIBUTES):
        raise ValueError(f"facts_per_entity is at most {len(ATTRIBUTES)}, got {facts_per_person}")
    people = []
    for _ in range(count):
        name = names.person()
        attributes = rng.sample(ATTRIBUTES, facts_per_person)
        people.append(Person(name, tuple((a.key, a.make_value(names)) for a in attributes)))
    return people


def make_facts(
    names: NameFactory, relations: Sequence[Relation], count: int, subject: Callable[[], str]
) -> list[Fact]:
    """`count` facts cycling over the relations, each about a new subject."""
    return [
        Fact(
            relations[i % len(relations)],
            subject(),
            relations[i % len(relations)].make_value(names),
        )
        for i in range(count)
    ]


def values_of(people: Sequence[Person], key: str) -> list[str]:
    """Every value an attribute takes among these people (the pool for wrong answers)."""
    return [v for p in people for k, v in p.facts if k == key]


def wrong_values(rng: random.Random, pool: Sequence[str], right: str, count: int) -> list[str]:
    """`count` distinct values from the pool, none equal to the right one."""
    candidates = sorted(set(pool) - {right})
    if len(candidates) < count:
        raise ValueError(f"need {count} wrong answers but the pool has {len(candidates)}")
    return rng.sample(candidates, count)


def person_prose(person: Person, style: int, heading: str) -> str:
    """A short prose document about a person, in one of two writing styles."""
    prose = " ".join(
        ATTRIBUTE_BY_KEY[k].statements[style % 2].format(n=person.name, v=v)
        for k, v in person.facts
    )
    return f"{heading.format(n=person.name)}\n{prose}"


def qa_text(question: str, answer: str) -> str:
    """One question-answer exchange as a document of its own.

    The miniature's corpora carry each fact twice: in prose and as a standalone exchange. A
    model of a million parameters trained for a minute memorises text but cannot learn to
    extract knowledge from prose alone (Allen-Zhu and Li, Physics of Language Models 3.1);
    with the exchanges, 'does the model know the fact' becomes measurable in the miniature.
    """
    return f"Question: {question}\nAnswer: {answer}"


def person_documents(person: Person, style: int, heading: str) -> list[str]:
    """The prose document and one exchange per fact."""
    return [person_prose(person, style, heading)] + [
        qa_text(x["question"], x["answer"]) for x in person_qa(person)
    ]


def person_qa(person: Person) -> list[dict[str, str]]:
    """Short-answer questions about a person (MUSE KnowMem and real-authors style)."""
    return [
        {"question": ATTRIBUTE_BY_KEY[k].question.format(n=person.name), "answer": v}
        for k, v in person.facts
    ]


def facts_document(facts: Sequence[Fact], heading: str) -> str:
    """A short document stating several facts, one sentence each."""
    return heading + "\n" + " ".join(f.statement for f in facts)


def chunks(items: Sequence, size: int) -> list[list]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]
