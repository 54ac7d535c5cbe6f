"""What the multi-domain benchmark measures of trained models (:mod:`benchmarks.multidomain`).

Translation quality per ordered pair of domains (unified with latent and reference styles, MUNIT
trained per pair, identity, histogram matching), the unification claim (can a classifier tell
latent from reference styles?) and the smoothness claim (how evenly the output changes along an
interpolation between two styles).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import permutations

import numpy as np
import torch

from benchmarks.tasks.metrics import histogram_matching_baseline, score
from benchmarks.tasks.multidomain import MultiDomainTask
from benchmarks.tasks.task import Task
from napari_i2i.contract.engine_api import StyleMode, StyleRequest, TranslationModel

# Interpolation paths per target domain, and styles on each (both ends included).
SMOOTHNESS_PATHS = 4
SMOOTHNESS_STEPS = 9


def to_tensor(tile: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(tile).permute(2, 0, 1)[None].float() / 127.5 - 1


def to_uint8(images: torch.Tensor) -> list[np.ndarray]:
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return [p.permute(1, 2, 0).numpy() for p in pixels]


@torch.inference_mode()
def translations(model: TranslationModel, task: MultiDomainTask, source: str, target: str, direction: str,
                 samples: int) -> dict[str, dict]:
    """Per test file of ``source``: latent samples, the output in the style of one reference (the
    task's reference tile of ``target``) and in the mean style of every training tile of ``target``
    (what a user gets by giving all their images of the domain as references: one image's own
    content no longer weighs in its style); for a model that stores them, also in the target's
    typical style (the same mean, measured when training ended on one training crop of each tile)."""
    every_tile = [to_tensor(tile) for _, tile in sorted(task.train[target].items())]
    by_reference = {
        "reference": model.condition(StyleRequest(StyleMode.REFERENCE, direction,
                                                  references=[to_tensor(task.reference(target))])),
        "references (every training tile)": model.condition(StyleRequest(StyleMode.REFERENCE, direction,
                                                                         references=every_tile)),
    }
    if StyleMode.TYPICAL in model.capabilities.style_modes:
        by_reference["typical style"] = model.condition(StyleRequest(StyleMode.TYPICAL, direction))
    outputs: dict[str, dict] = {"latent": {}, **{method: {} for method in by_reference}}
    for index, (file, tile) in enumerate(sorted(task.test[source].items())):
        styles = model.condition(StyleRequest(StyleMode.RANDOM, direction, n_samples=samples, seed=index))
        outputs["latent"][file] = to_uint8(model.translate(to_tensor(tile), styles))
        for method, conditioning in by_reference.items():
            outputs[method][file] = to_uint8(model.translate(to_tensor(tile), conditioning))[0]
    return outputs


def score_pairs(unified: TranslationModel, per_pair: Mapping[tuple[str, str], tuple[TranslationModel, str]],
                task: MultiDomainTask, samples: int) -> list[dict]:
    """Rows ``{pair, method, l1, psnr, ssim, diversity}`` for every ordered pair of domains;
    ``per_pair[(source, target)]`` is the MUNIT model of that pair and its direction (a2b/b2a)."""
    rows = []
    for source, target in permutations(task.train, 2):
        baseline_task = Task("pair", {"test_a": task.test[source], "train_b": task.train[target]})
        predictions = {"identity": dict(task.test[source]),
                       "histogram matching": histogram_matching_baseline(baseline_task)}
        for method, predicted in translations(unified, task, source, target, f"to_{target}", samples).items():
            predictions[f"unified {method}"] = predicted
        if (source, target) in per_pair:
            munit, direction = per_pair[(source, target)]
            for method, predicted in translations(munit, task, source, target, direction, samples).items():
                predictions[f"MUNIT per pair, {method}"] = predicted
        for method, predicted in predictions.items():
            rows.append({"pair": f"{source}→{target}", "method": method, **score(task.test[target], predicted)})
    return rows


UNIFICATION_SPLITS = 20  # random halves the classifier is fitted and scored on (their mean accuracy)
GAP_LATENTS = 256  # latent styles per domain (at least; the domain's reference codes are usually fewer)


def held_out_accuracy(first: torch.Tensor, second: torch.Tensor, seed: int = 0,
                      splits: int = UNIFICATION_SPLITS) -> float:
    """Logistic regression telling ``first`` (label 1) from ``second`` (0), fitted on a random half
    and scored on the other: the mean held-out accuracy over *splits* halves (one half of a few
    dozen codes moves the accuracy in steps of several per cent)."""
    return float(np.mean([_one_split_accuracy(first, second, seed + split) for split in range(splits)]))


def _one_split_accuracy(first: torch.Tensor, second: torch.Tensor, seed: int) -> float:
    generator = torch.Generator().manual_seed(seed)
    codes = torch.cat([first, second]).float()
    labels = torch.cat([torch.ones(len(first)), torch.zeros(len(second))])
    order = torch.randperm(len(codes), generator=generator)
    train_rows, test_rows = order[: len(order) // 2], order[len(order) // 2:]
    mean, std = codes[train_rows].mean(0), codes[train_rows].std(0) + 1e-6
    codes = (codes - mean) / std
    weight = torch.zeros(codes.shape[1], requires_grad=True)
    bias = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], max_iter=200)

    def closure():
        optimizer.zero_grad()
        logits = codes[train_rows] @ weight + bias
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels[train_rows])
        loss = loss + 1e-3 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        predicted = (codes[test_rows] @ weight + bias) > 0
    return float((predicted == labels[test_rows].bool()).float().mean())


def style_gap(first: torch.Tensor, second: torch.Tensor) -> float:
    """The energy coefficient of two sets of codes, ``(2·E|X−Y| − E|X−X'| − E|Y−Y'|) / (2·E|X−Y|)``:
    0 when they come from one distribution, towards 1 the further apart; no fitting, so it has no
    split noise and takes sets of different sizes."""
    first, second = first.double(), second.double()

    def within(codes: torch.Tensor) -> torch.Tensor:  # the mean over distinct pairs
        n = len(codes)
        return torch.cdist(codes, codes).sum() / (n * (n - 1))

    between = torch.cdist(first, second).mean()
    return float(((2 * between - within(first) - within(second)) / (2 * between)).clamp(min=0))


def unification(model: TranslationModel, task: MultiDomainTask) -> dict[str, dict[str, float]]:
    """Per domain, latent against reference styles: the held-out accuracy of telling them apart
    (0.5: one space) and their style gap (0: one space). The reference codes are those of every
    tile of the domain, training and test (the claim is about the two sets of codes, not about
    unseen images). ``condition`` computes styles without gradients; the classifier needs them,
    so no inference mode."""
    result = {"accuracy": {}, "gap": {}}
    for name in task.test:
        direction = f"to_{name}"
        tiles = [*task.train[name].values(), *task.test[name].values()]
        references = torch.cat([
            model.condition(StyleRequest(StyleMode.REFERENCE, direction, references=[to_tensor(t)])).styles
            for t in tiles])
        latent = model.condition(StyleRequest(StyleMode.RANDOM, direction,
                                              n_samples=max(GAP_LATENTS, len(references)), seed=7)).styles
        result["accuracy"][name] = held_out_accuracy(latent[: len(references)], references)
        result["gap"][name] = style_gap(latent, references)
    return result


def path_changes(outputs: torch.Tensor, styles: torch.Tensor) -> tuple[float, float]:
    """Along one interpolation: the mean output change (L1, 0-255) per unit of style distance, and
    the coefficient of variation of the per-step changes (0: every step changes the output alike)."""
    steps = ((outputs[1:] - outputs[:-1]).abs().mean(dim=(1, 2, 3)) * 127.5).double()
    lengths = (styles[1:] - styles[:-1]).norm(dim=1).double()
    per_unit = float((steps / lengths.clamp_min(1e-12)).mean())
    spread = float(steps.std() / steps.mean().clamp_min(1e-12))
    return per_unit, spread


@torch.inference_mode()
def smoothness(model: TranslationModel, task: MultiDomainTask) -> dict[str, dict[str, float]]:
    """Per target domain, over :data:`SMOOTHNESS_PATHS` interpolations between the reference styles
    of two test tiles of that domain, each translating a test tile of the next domain: the mean
    change per unit style step and the mean coefficient of variation of the per-step changes."""
    names = list(task.test)
    result = {}
    for position, target in enumerate(names):
        tiles = [task.test[target][file] for file in sorted(task.test[target])]
        sources = [task.test[names[(position + 1) % len(names)]][file] for file in sorted(task.test[target])]
        per_unit, spread = [], []
        for path in range(min(SMOOTHNESS_PATHS, len(tiles) - 1)):
            ends = [to_tensor(tiles[path]), to_tensor(tiles[path + 1])]
            conditioning = model.condition(StyleRequest(StyleMode.INTERPOLATE, f"to_{target}",
                                                        n_samples=SMOOTHNESS_STEPS, references=ends))
            outputs = model.translate(to_tensor(sources[path]), conditioning)
            unit, variation = path_changes(outputs.float(), conditioning.styles.float())
            per_unit.append(unit)
            spread.append(variation)
        result[target] = {"change_per_unit": float(np.mean(per_unit)), "step_cv": float(np.mean(spread))}
    return result


@torch.inference_mode()
def gate_opening(model: TranslationModel, task: MultiDomainTask) -> dict[str, float]:
    """For a model with the input gate: per target domain, the mean gate (0: the input kept, 1: the
    decoder's image) over the test tiles of the other domains in the style of the target's reference
    tile, as :func:`translations`."""
    generator, result = model.generator, {}
    for target in task.test:
        reference = to_tensor(task.reference(target))
        styles = model.condition(StyleRequest(StyleMode.REFERENCE, f"to_{target}", references=[reference])).styles
        gates = [generator.decoder(generator.content_encoder(to_tensor(tile)), styles)[:, -1].mean()
                 for source in task.test if source != target for tile in task.test[source].values()]
        result[target] = float(torch.stack(gates).mean())
    return result
