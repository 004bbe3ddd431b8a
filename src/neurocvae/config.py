"""Where the Hydra configs live, for editable and regular installs alike."""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def config_dir() -> Path:
    """The folder holding `synth.yaml` and the config groups.

    A wheel ships the configs inside the package (`neurocvae/conf`); an editable install or a
    source checkout uses `conf/` at the top of the repository.
    """
    for candidate in (_PACKAGE / "conf", _PACKAGE.parents[1] / "conf"):
        if (candidate / "synth.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"neurocvae's Hydra configs were not found beside {_PACKAGE}: reinstall the package "
        "(`pip install .`) so that conf/ is shipped with it."
    )
