"""Fixtures shared by the unit tests."""
import pytest

from utils.models import BUNDLED, load_model


@pytest.fixture(autouse=True)
def no_figure_log(monkeypatch):
    """The figure check of the root conftest is for the notebooks' figures, not for the
    deliberately crowded figures that unit tests draw."""
    monkeypatch.delenv("VCNN_FIGURE_LOG", raising=False)


@pytest.fixture(scope="session")
def lite():
    """The bundled EfficientNet-Lite0 on the CPU (offline, pretrained). Tests that use it
    must leave it as they found it: most of them assert exactly that."""
    return load_model(BUNDLED, device="cpu", verbose=False)
