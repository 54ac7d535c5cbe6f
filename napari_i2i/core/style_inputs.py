"""What a user gave for the style of a request, and how a front end names those inputs, without
torch: the command line builds its words when its module is imported, and stays fast to start."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Wording:
    """How a front end names one input: ``name`` to drop it, ``give`` to say how to give it."""

    name: str
    give: str


@dataclass(frozen=True)
class StyleWords:
    """A front end's words for each style input, used in the rule's messages."""

    references: Wording
    match: Wording
    class_examples: Wording
    interpolate: Wording
    steps: Wording
    samples: Wording
    typical: Wording
    front_end: str  # e.g. "the command line", in "a style the command line cannot give"


@dataclass(frozen=True)
class StyleInputs:
    """What the user gave for the style; ``None``: not given at all (``0``: given, but empty)."""

    references: int | None = None  # style reference images
    match: bool = False  # each input takes the style of its closest reference
    class_examples: int | None = None  # few-shot: images of the class to translate into
    interpolation_ends: int | None = None  # images to interpolate between
    steps: int | None = None  # interpolation steps, both ends included
    n_samples: int = 1  # random styles
    typical: bool = False  # the target domain's typical style, stored in the model
