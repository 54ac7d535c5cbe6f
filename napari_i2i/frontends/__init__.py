"""The front ends: the command line, the napari widgets, the demo and sample data.

They build on the core, the contract, ``engines`` and ``trainers``; nothing
imports them back.
"""
