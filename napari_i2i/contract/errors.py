"""The contract's errors, in a module without torch: front ends catch them (one line, exit
status 2) without importing the engine API."""

from __future__ import annotations


class EngineError(Exception):
    """A request an engine cannot serve, with a message meant for the user."""


class ReferenceImageError(EngineError):
    """What is wrong with one image of a style request (a style reference or class example).

    ``position`` is its place in ``StyleRequest.references``, counted from 1,
    so that a front end can say which layer or file it came from.
    """

    def __init__(self, message: str, position: int):
        super().__init__(message)
        self.position = position


class DuplicateEngineError(EngineError):
    """Two plugins registered engines (or trainers, or data kinds) of the same name."""


class UnknownEngineError(EngineError):
    """No engine of that name is registered."""


class UnknownDataKindError(EngineError):
    """A trainer names a data kind that no plugin registered."""
