"""Offline quality benchmark for unpaired translation, with exact ground truth.

Every task is generated at run time, deterministically, from data that ships
in packages (scikit-image, stardist's sample images, Debian fonts). Each task
has unpaired training halves (``train_a``, ``train_b``: disjoint sources, no
pairs) and a held-out paired test set (``test_a``/``test_b``, same names).

    python -m benchmarks.tasks.generate all --out /tmp/i2i_tasks
    python -m benchmarks.tasks.metrics baselines /tmp/i2i_tasks

Modules: ``generate`` (builds and writes the tasks: ``stain``, ``fluo2bf``,
``glyphs``, ``keep_change``, ``digits``), ``task`` (the task, its split and its folder),
``fonts`` (glyph rendering), ``stardist_data``, ``metrics`` (PSNR/SSIM/L1, diversity,
baselines, tables), the few-shot glyph task ``fewshot`` with its
``fewshot_baselines``, and the few-shot stain task ``fewshot_stain``.
See ``docs/benchmarks.md`` ("Quality benchmark: tasks and baselines").
"""
