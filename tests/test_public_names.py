"""Every public name of a package resolves, and importing a light one does not import Lightning."""

import importlib
import subprocess
import sys

import pytest

PACKAGES = ["neurocvae", "neurocvae.data", "neurocvae.synthetic", "neurocvae.brainage",
            "neurocvae.contrastive", "neurocvae.evaluation"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package):
    module = importlib.import_module(package)
    assert sorted(module.__all__) == dir(module)
    for name in module.__all__:
        assert getattr(module, name).__name__ in (name, "run")
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        module.nothing  # noqa: B018


def test_reading_a_table_does_not_import_lightning():
    code = ("import sys; from neurocvae.data import read_manifest; "
            "print('pytorch_lightning' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.stdout.strip() == "False", result.stderr
