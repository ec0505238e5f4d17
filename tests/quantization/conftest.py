from __future__ import annotations

import pytest

import nbdeploy as nbd

torch = pytest.importorskip("torch")


@pytest.fixture(scope="session")
def digits():  # type: ignore[no-untyped-def]
    from nbdeploy import examples

    return examples.digits()


@pytest.fixture(scope="session")
def digits_cnn(digits) -> nbd.Artifact:  # type: ignore[no-untyped-def]
    """The digits CNN, trained in the test on scikit-learn's bundled data, optimized."""
    from nbdeploy import examples

    model = examples.train_digits_cnn(digits)
    images = examples.Digits.images(digits.x_val)
    return nbd.optimize(nbd.export(model, images[:8], name="digits"))
