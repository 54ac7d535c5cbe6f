"""The one rule for the style of a translation request: which mode it asks for, and whether
what it gives fits that mode and the model.

The command line infers the mode from the inputs given (:func:`choose_style_mode`); the
Translate widget has the user pick it and checks the rest (:func:`check_style`). Each front
end names its inputs in its own words (``--reference IMG...``, a layer list), so the rule
takes those words (:class:`StyleWords`) and its messages say what to change there.
"""

from __future__ import annotations

from collections.abc import Sequence

from napari_i2i.contract.engine_api import EngineError, StyleMode
from napari_i2i.core.style_inputs import StyleInputs, StyleWords


class StyleChoiceError(EngineError):
    """A style request that does not fit the model or itself; the message says what to change."""


def require_class_examples(count: int) -> None:
    """Few-shot translation needs one class example or more."""
    if count < 1:
        raise StyleChoiceError(
            "few-shot translation needs at least one class example: an image of the class "
            "to translate into (several images, or one stack whose planes are the examples)"
        )


def require_interpolation_ends(count: int) -> None:
    """An interpolation goes between exactly two reference images."""
    if count != 2:
        raise StyleChoiceError(
            "style interpolation goes from the style of one reference image to that of another: "
            f"choose exactly 2 reference images, not {count}"
        )


def choose_style_mode(
    given: StyleInputs, offered: Sequence[StyleMode], engine: str, words: StyleWords
) -> StyleMode:
    """The mode the given inputs ask for, checked by :func:`check_style`: the typical style if
    asked for, the class of the class examples, or the style of the references, if given; else
    random styles, else none."""
    if given.match and not given.references:
        mode = StyleMode.MATCHED  # the check says what is missing
    elif given.typical:
        mode = StyleMode.TYPICAL  # the check refuses any other style input given with it
    elif given.interpolation_ends is not None:
        mode = StyleMode.INTERPOLATE
    elif given.class_examples is not None:
        mode = StyleMode.FEW_SHOT
    elif given.references is not None:
        mode = StyleMode.MATCHED if given.match else StyleMode.REFERENCE
    elif StyleMode.RANDOM in offered or given.n_samples != 1:
        mode = StyleMode.RANDOM  # without random styles, the check refuses the samples
    else:
        mode = StyleMode.NONE  # without it, the check says which style to give
    check_style(mode, given, offered, engine, words)
    return mode


def check_style(
    mode: StyleMode, given: StyleInputs, offered: Sequence[StyleMode], engine: str, words: StyleWords
) -> None:
    """Refuse what does not fit *mode*: a mode the model lacks, another mode's inputs, missing images."""
    if given.match and not given.references:
        raise StyleChoiceError(f"{words.match.name} chooses among style references: "
                               f"give them with {words.references.give}")
    if mode is StyleMode.TYPICAL:
        _check_typical(given, offered, engine, words)
        return
    if mode is StyleMode.INTERPOLATE:
        _check_interpolation(given, offered, engine, words)
        return
    if given.steps is not None:
        raise StyleChoiceError(f"{words.steps.name} is the number of interpolation steps; "
                               f"give it with {words.interpolate.give}")
    if mode is StyleMode.FEW_SHOT:
        _check_few_shot(given, offered, engine, words)
    elif mode in (StyleMode.REFERENCE, StyleMode.MATCHED):
        _check_references(mode, given, offered, engine, words)
    elif mode is StyleMode.RANDOM and mode not in offered:
        raise StyleChoiceError(f"this {engine} model has no random styles ({_styles(offered)}); "
                               f"drop {words.samples.name}")
    elif mode is StyleMode.NONE and mode not in offered:
        _refuse_missing_style(offered, engine, words)


def _styles(offered: Sequence[StyleMode]) -> str:
    return "styles: " + ", ".join(mode.value for mode in offered)


def _check_typical(given: StyleInputs, offered: Sequence[StyleMode], engine: str, words: StyleWords) -> None:
    if StyleMode.TYPICAL not in offered:
        raise StyleChoiceError(f"this {engine} model stores no typical style of its domains ({_styles(offered)}; "
                               f"multi-domain models trained with this version do); drop {words.typical.name}")
    others = [wording.name for wording, given_too in (
        (words.references, given.references is not None), (words.class_examples, given.class_examples is not None),
        (words.interpolate, given.interpolation_ends is not None), (words.steps, given.steps is not None),
        (words.samples, given.n_samples != 1)) if given_too]
    if others:
        raise StyleChoiceError(f"{words.typical.name} is a style of its own; drop {' and '.join(others)}")


def _check_interpolation(given: StyleInputs, offered: Sequence[StyleMode], engine: str, words: StyleWords) -> None:
    if StyleMode.INTERPOLATE not in offered:
        raise StyleChoiceError(f"this {engine} model does not interpolate between styles ({_styles(offered)}); "
                               f"drop {words.interpolate.name}")
    if given.references is not None or given.class_examples is not None:
        raise StyleChoiceError(f"{words.interpolate.give} takes the place of {words.references.name} and "
                               f"{words.class_examples.name}; give it alone")
    if given.n_samples != 1:
        raise StyleChoiceError(f"{words.samples.name} applies to random styles; give the number of "
                               f"interpolation steps with {words.steps.name}")
    if given.steps is None or given.steps < 2:
        raise StyleChoiceError(f"{words.interpolate.name} needs {words.steps.give} with N >= 2 "
                               "(both ends included)")
    require_interpolation_ends(given.interpolation_ends or 0)


def _check_few_shot(given: StyleInputs, offered: Sequence[StyleMode], engine: str, words: StyleWords) -> None:
    if StyleMode.FEW_SHOT not in offered:
        raise StyleChoiceError(f"this {engine} model does not translate into the class of example images "
                               f"({_styles(offered)}); drop {words.class_examples.name}")
    if given.references is not None:
        raise StyleChoiceError(f"give either {words.class_examples.name} or {words.references.name}, not both")
    if given.n_samples != 1:
        raise StyleChoiceError(f"{words.samples.name} applies to random styles; drop it when giving "
                               f"{words.class_examples.name}")
    require_class_examples(given.class_examples or 0)


def _check_references(
    mode: StyleMode, given: StyleInputs, offered: Sequence[StyleMode], engine: str, words: StyleWords
) -> None:
    if StyleMode.REFERENCE not in offered:
        hint = (f"; give class examples with {words.class_examples.name}"
                if StyleMode.FEW_SHOT in offered else "")
        raise StyleChoiceError(f"this {engine} model takes no style reference ({_styles(offered)}); "
                               f"drop {words.references.name}{hint}")
    if given.n_samples != 1:
        raise StyleChoiceError(f"{words.samples.name} applies to random styles; drop it when giving "
                               f"{words.references.name}")
    if mode is StyleMode.MATCHED and mode not in offered:
        raise StyleChoiceError(f"this {engine} model cannot match references to inputs ({_styles(offered)}); "
                               f"drop {words.match.name}")
    if not given.references:
        raise StyleChoiceError("style from reference needs at least one style reference: "
                               f"give it with {words.references.give}")


def _refuse_missing_style(offered: Sequence[StyleMode], engine: str, words: StyleWords) -> None:
    """A model without deterministic translation: name the style it needs instead."""
    if StyleMode.FEW_SHOT in offered:
        raise StyleChoiceError(f"this {engine} model translates into the class shown by example images; "
                               f"give one or more with {words.class_examples.give}")
    if StyleMode.REFERENCE in offered:
        also = (f" (or {words.interpolate.give} {words.steps.give})"
                if StyleMode.INTERPOLATE in offered else "")
        raise StyleChoiceError(f"this {engine} model takes its style from reference images: "
                               f"give {words.references.give}{also}")
    raise StyleChoiceError(f"this {engine} model needs a style {words.front_end} cannot give "
                           f"({_styles(offered)})")
