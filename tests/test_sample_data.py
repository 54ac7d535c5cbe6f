"""The stain demo's sample data: what it is, and that it matches the stain model's training data."""

import numpy as np
from skimage import data

from napari_i2i.frontends.sample_data import (
    REFERENCE_REGION,
    SOURCE_REGION,
    he_like_reference,
    he_like_restain,
    ihc_tile,
)


def test_source_and_reference_are_disjoint_256_regions_of_the_ihc_image():
    [(source, source_kwargs, source_type)] = ihc_tile()
    [(reference, reference_kwargs, reference_type)] = he_like_reference()
    ihc = data.immunohistochemistry()

    assert source_type == reference_type == "image"
    assert source_kwargs["rgb"] and reference_kwargs["rgb"]
    assert (source_kwargs["name"], reference_kwargs["name"]) == ("IHC", "H&E-like reference")
    assert source.shape == reference.shape == (256, 256, 3)
    assert source.dtype == reference.dtype == np.uint8
    np.testing.assert_array_equal(source, ihc[SOURCE_REGION])
    np.testing.assert_array_equal(reference, he_like_restain(ihc[REFERENCE_REGION]))
    assert "not a real H&E" in reference_kwargs["metadata"]["napari_i2i_sample"]["synthetic"]

    mask = np.zeros(ihc.shape[:2], dtype=int)
    mask[SOURCE_REGION] += 1
    mask[REFERENCE_REGION] += 1
    assert mask.max() == 1  # no pixel in both
