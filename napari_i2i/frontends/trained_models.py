"""The model files trained in this napari session, shared by the Train and Translate widgets."""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal


class TrainedModels:
    """Model files trained in this napari session (the Train widget), newest first: every
    Translate widget lists them next to the bundled ones."""

    added = Signal(Path)

    def __init__(self) -> None:
        self.paths: list[Path] = []

    def add(self, path: Path) -> None:
        if path in self.paths:
            self.paths.remove(path)
        self.paths.insert(0, path)
        self.added.emit(path)


TRAINED_MODELS = TrainedModels()
