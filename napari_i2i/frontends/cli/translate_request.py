"""What ``napari-i2i translate``'s flags ask of a model: direction, style mode, options.

Shared by the single-job path (:mod:`napari_i2i.frontends.cli.translate`) and the
many-files path (:mod:`napari_i2i.frontends.cli.batch`), so both read the flags
the same way. Importing it imports no torch.
"""

from __future__ import annotations

import argparse

from napari_i2i.core.style_inputs import StyleInputs, StyleWords, Wording

# The style inputs as the command line names them, for the style rule's messages.
CLI_WORDS = StyleWords(
    references=Wording("--reference", "--reference IMG..."),
    match=Wording("--match", "--match"),
    class_examples=Wording("--class-images", "--class-images IMG..."),
    interpolate=Wording("--interpolate", "--interpolate REF1 REF2"),
    steps=Wording("--steps", "--steps N"),
    samples=Wording("--samples", "--samples"),
    typical=Wording("--typical-style", "--typical-style"),
    front_end="the command line",
)


def style_inputs(args: argparse.Namespace) -> StyleInputs:
    """The style flags as the style rule counts them (an absent flag: None)."""
    return StyleInputs(
        references=len(args.reference) or None,
        match=args.match,
        class_examples=len(args.class_images) or None,
        interpolation_ends=len(args.interpolate) if args.interpolate else None,
        steps=args.steps,
        n_samples=args.samples,
        typical=args.typical_style,
    )


def pixel_hint(read, *args):
    """*read* with a hint at ``--max-pixels`` added to a refusal over the pixel limit."""
    from napari_i2i.core.image_io import TooManyPixelsError

    try:
        return read(*args)
    except TooManyPixelsError as error:
        raise TooManyPixelsError(f"{error}; --max-pixels N raises the limit") from None


def direction_for(args: argparse.Namespace, capabilities) -> str:
    """``--direction``, or ``to_NAME`` for ``--domain NAME``, or the model's first direction."""
    if args.domain is None:
        return args.direction or next(iter(capabilities.directions))
    targets = {name: f"to_{name}" for name in capabilities.domains
               if f"to_{name}" in capabilities.directions}
    if not targets:
        raise ValueError(f"--domain is for models whose directions are target domains; this one translates "
                         f"{', '.join(capabilities.directions)}: use --direction")
    if args.domain not in targets:
        raise ValueError(f"--domain {args.domain!r}: this model's domains are {', '.join(targets)}")
    return targets[args.domain]


def job_options(args: argparse.Namespace, loaded):
    """The :class:`~napari_i2i.core.translate.TranslateOptions` the flags ask for, checked
    against the model (a one-line error where they do not fit it)."""
    from napari_i2i.contract.engine_api import StyleMode
    from napari_i2i.core.device import resolve_precision
    from napari_i2i.core.style_choice import choose_style_mode
    from napari_i2i.core.translate import TranslateOptions, check_options

    if args.domain is not None and args.direction is not None:
        raise ValueError("give --domain NAME or --direction, not both (--domain NAME is --direction to_NAME)")
    capabilities = loaded.model.capabilities
    mode = choose_style_mode(style_inputs(args), capabilities.style_modes, loaded.info.engine, CLI_WORDS)
    options = TranslateOptions(direction=direction_for(args, capabilities), mode=mode, seed=args.seed,
                               tile=args.tile, precision=args.precision, compile=args.compile,
                               n_samples=args.steps if mode is StyleMode.INTERPOLATE else args.samples)
    check_options(loaded, options)
    resolve_precision(args.precision, next(loaded.model.parameters()).device)  # fp16 on a CPU: refused now
    return options
