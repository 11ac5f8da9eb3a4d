"""Test helper shared by the MNIST data and environment tests: the canonical file's path."""

import os

import pytest


def canonical_mnist_path() -> str:
    """The canonical 60k mnist.npz that CI points $SCALELAB_MNIST at; skips when unset."""
    path = os.environ.get("SCALELAB_MNIST")
    if not path:
        pytest.skip("SCALELAB_MNIST is unset; point it at the canonical mnist.npz to run this")
    return path
