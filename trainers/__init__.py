"""Training of translation engines: pure torch, no Qt and no napari, so it runs headless."""
