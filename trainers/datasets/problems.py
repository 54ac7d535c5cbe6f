"""Problems with training images: collected for every image, then raised together."""

from __future__ import annotations

from collections.abc import Sequence

SHOWN_PROBLEMS = 50


class DatasetError(ValueError):
    """Images unfit for training, every bad one named, so all can be fixed in one go."""

    def __init__(self, summary: str, problems: Sequence[str] = ()):
        self.problems = list(problems)
        lines = [f"  {problem}" for problem in self.problems[:SHOWN_PROBLEMS]]
        if len(self.problems) > SHOWN_PROBLEMS:
            lines.append(f"  … and {len(self.problems) - SHOWN_PROBLEMS} more")
        super().__init__("\n".join([summary, *lines]))


class Problem(Exception):
    """Why one image cannot be used; whoever catches it adds the image's name."""
