"""The style rule shared by the command line and the Translate widget, over modes × inputs."""

import pytest

from napari_i2i.contract.engine_api import EngineError, StyleMode
from napari_i2i.core.style_choice import StyleChoiceError, StyleInputs, check_style, choose_style_mode
from napari_i2i.frontends.cli.translate import CLI_WORDS
from napari_i2i.frontends.translate_job import WIDGET_WORDS, style_inputs

M = StyleMode
MUNIT = (M.RANDOM, M.REFERENCE, M.MATCHED)
UNIT = (M.NONE,)
FUNIT = (M.FEW_SHOT,)
STEP = (M.REFERENCE, M.INTERPOLATE)  # no fitted mapper: no random styles
STEP_MAPPED = (M.REFERENCE, M.RANDOM, M.INTERPOLATE)
UNIFIED = (M.RANDOM, M.REFERENCE, M.INTERPOLATE, M.TYPICAL)  # trained with typical styles stored
ODD = (M.MATCHED,)  # a model whose only style no front end can give alone


@pytest.mark.parametrize(
    "offered, given, mode",
    [
        (MUNIT, StyleInputs(), M.RANDOM),
        (MUNIT, StyleInputs(n_samples=3), M.RANDOM),
        (MUNIT, StyleInputs(references=2), M.REFERENCE),
        (MUNIT, StyleInputs(references=2, match=True), M.MATCHED),
        (UNIT, StyleInputs(), M.NONE),
        (FUNIT, StyleInputs(class_examples=3), M.FEW_SHOT),
        (STEP, StyleInputs(references=1), M.REFERENCE),
        (STEP, StyleInputs(interpolation_ends=2, steps=2), M.INTERPOLATE),
        (STEP_MAPPED, StyleInputs(), M.RANDOM),
        (UNIFIED, StyleInputs(typical=True), M.TYPICAL),
        (UNIFIED, StyleInputs(), M.RANDOM),  # typical styles only when asked for
    ],
)
def test_command_line_inputs_choose_the_mode(offered, given, mode):
    assert choose_style_mode(given, offered, "x", CLI_WORDS) is mode


@pytest.mark.parametrize(
    "offered, given, message",
    [
        (MUNIT, StyleInputs(match=True), "--match chooses among style references: give them with --reference IMG..."),
        (MUNIT, StyleInputs(match=True, interpolation_ends=2, steps=3), "--match chooses among style references"),
        (MUNIT, StyleInputs(interpolation_ends=2, steps=3),
         "this x model does not interpolate between styles (styles: random, reference, matched); drop --interpolate"),
        (STEP, StyleInputs(interpolation_ends=2, steps=3, references=1),
         "--interpolate REF1 REF2 takes the place of --reference and --class-images; give it alone"),
        (STEP, StyleInputs(interpolation_ends=2, steps=3, n_samples=2),
         "--samples applies to random styles; give the number of interpolation steps with --steps"),
        (STEP, StyleInputs(interpolation_ends=2), "--interpolate needs --steps N with N >= 2"),
        (STEP, StyleInputs(interpolation_ends=2, steps=1), "--interpolate needs --steps N with N >= 2"),
        (STEP, StyleInputs(references=1, steps=3),
         "--steps is the number of interpolation steps; give it with --interpolate REF1 REF2"),
        (FUNIT, StyleInputs(steps=3), "give it with --interpolate REF1 REF2"),
        (UNIT, StyleInputs(steps=3), "give it with --interpolate REF1 REF2"),
        (MUNIT, StyleInputs(class_examples=2),
         "this x model does not translate into the class of example images (styles: random, reference, "
         "matched); drop --class-images"),
        (FUNIT, StyleInputs(class_examples=2, references=1), "give either --class-images or --reference, not both"),
        (FUNIT, StyleInputs(class_examples=2, n_samples=2),
         "--samples applies to random styles; drop it when giving --class-images"),
        (FUNIT, StyleInputs(references=1),
         "this x model takes no style reference (styles: few_shot); drop --reference; "
         "give class examples with --class-images"),
        (UNIT, StyleInputs(references=1), "this x model takes no style reference (styles: none); drop --reference"),
        (MUNIT, StyleInputs(references=1, n_samples=3),
         "--samples applies to random styles; drop it when giving --reference"),
        (STEP, StyleInputs(references=1, match=True),
         "this x model cannot match references to inputs (styles: reference, interpolate); drop --match"),
        (UNIT, StyleInputs(n_samples=3), "this x model has no random styles (styles: none); drop --samples"),
        (FUNIT, StyleInputs(n_samples=3), "this x model has no random styles (styles: few_shot); drop --samples"),
        (FUNIT, StyleInputs(),
         "this x model translates into the class shown by example images; give one or more with "
         "--class-images IMG..."),
        (STEP, StyleInputs(),
         "this x model takes its style from reference images: give --reference IMG... "
         "(or --interpolate REF1 REF2 --steps N)"),
        (ODD, StyleInputs(), "this x model needs a style the command line cannot give (styles: matched)"),
        (UNIFIED[:3], StyleInputs(typical=True),
         "this x model stores no typical style of its domains (styles: random, reference, interpolate; "
         "multi-domain models trained with this version do); drop --typical-style"),
        (UNIFIED, StyleInputs(typical=True, references=1, n_samples=3),
         "--typical-style is a style of its own; drop --reference and --samples"),
        (UNIFIED, StyleInputs(typical=True, interpolation_ends=2, steps=3),
         "--typical-style is a style of its own; drop --interpolate and --steps"),
    ],
)
def test_command_line_errors_name_the_flags(offered, given, message):
    with pytest.raises(StyleChoiceError) as raised:
        choose_style_mode(given, offered, "x", CLI_WORDS)
    assert message in str(raised.value)
    assert isinstance(raised.value, EngineError) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    "offered, mode, n_references, n_samples",
    [
        (MUNIT, M.RANDOM, 0, 4),
        (MUNIT, M.REFERENCE, 1, 4),  # the hidden spinbox does not count
        (MUNIT, M.MATCHED, 2, 1),
        (UNIT, M.NONE, 0, 3),
        (FUNIT, M.FEW_SHOT, 1, 1),
        (STEP, M.INTERPOLATE, 2, 2),
        (UNIFIED, M.TYPICAL, 2, 3),  # hidden references and samples do not count
    ],
)
def test_widget_controls_pass_the_rule(offered, mode, n_references, n_samples):
    given = style_inputs(mode, n_references, n_samples)
    check_style(mode, given, offered, "x", WIDGET_WORDS)
    assert choose_style_mode(given, offered, "x", WIDGET_WORDS) is mode  # the same mode, inferred


@pytest.mark.parametrize(
    "offered, mode, n_references, message",
    [
        (MUNIT, M.MATCHED, 0,
         "matched mode chooses among style references: give them with the list of style references"),
        (MUNIT, M.REFERENCE, 0,
         "style from reference needs at least one style reference: give it with the list of style references"),
        (FUNIT, M.FEW_SHOT, 0, "few-shot translation needs at least one class example"),
        (STEP, M.INTERPOLATE, 1, "choose exactly 2 reference images, not 1"),
        (STEP, M.INTERPOLATE, 3, "choose exactly 2 reference images, not 3"),
    ],
)
def test_widget_refusals_before_a_run(offered, mode, n_references, message):
    with pytest.raises(StyleChoiceError, match=message):
        check_style(mode, style_inputs(mode, n_references, 2), offered, "x", WIDGET_WORDS)
