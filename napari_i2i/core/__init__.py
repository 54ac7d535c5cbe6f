"""The core: what every front end shares, without Qt.

Images ↔ tensors, image files, tiling, model files, devices, bundled models
and the translation job. It depends on the contract only.
"""
