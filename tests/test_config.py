"""The installed commands find conf/ from any folder, for editable and regular installs."""

import subprocess
import sys
import zipfile

import pytest

from neurocvae.config import compose_config, config_dir


def test_config_dir_holds_the_synth_config():
    assert (config_dir() / "synth.yaml").is_file()
    assert (config_dir() / "grid" / "ci.yaml").is_file()


@pytest.mark.slow
def test_a_regular_install_ships_the_configs(tmp_path):
    root = config_dir().parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w",
                    str(tmp_path / "dist"), str(root)], check=True, timeout=600)
    wheel = next((tmp_path / "dist").glob("neurocvae-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    found = subprocess.run(
        [sys.executable, "-c", "from neurocvae.config import config_dir; print(config_dir())"],
        cwd=tmp_path, env={"PYTHONPATH": str(tmp_path / "site")}, capture_output=True,
        text=True, check=True)
    assert found.stdout.strip() == str(tmp_path / "site" / "neurocvae" / "conf")


@pytest.mark.parametrize(("old", "new"), [("arch=seed_asd", "arch=original_asd"),
                                          ("beta=seed_cyclical", "beta=original_cyclical"),
                                          ("experiment=seed_protocol",
                                           "experiment=original_protocol")])
def test_the_former_names_of_the_original_configs_still_compose_the_same(old, new):
    base = ["data.target=t", "data.background=b"]
    assert compose_config("train", [*base, old]) == compose_config("train", [*base, new])
