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


COMMAND_GROUPS = {  # command config → the groups it composes, as its --help lists them
    "brainage": ["paths", "data", "net", "optim", "trainer", "logger"],
    "train": ["paths", "data", "arch", "latent", "beta", "gamma", "trainer", "callbacks", "logger",
              "experiment", "sweep", "hparams_search", "debug"],
    "synth": ["grid"],
    "benchmark": ["paths", "preset"],
}
REQUIRED = {"brainage": ["data.manifest=m.csv"], "train": ["data.target=t", "data.background=b"]}
OPTIONS = [(command, group, path.stem) for command, groups in COMMAND_GROUPS.items()
           for group in groups for path in sorted((config_dir() / group).glob("*.yaml"))
           if not (command == "brainage" and group == "data" and path.stem != "brainage")
           and not (command == "train" and group == "data" and path.stem != "contrastive")]


@pytest.mark.parametrize(("command", "group", "option"), OPTIONS,
                         ids=[f"{c}:{g}={o}" for c, g, o in OPTIONS])
def test_every_config_of_every_group_composes(command, group, option):
    cfg = compose_config(command, [*REQUIRED.get(command, []), f"{group}={option}"])
    assert cfg is not None
    if command == "train" and group not in ("sweep", "hparams_search", "data", "paths"):
        assert set(cfg) >= {"arch", "beta", "gamma", "model", "trainer"}


def test_each_command_lists_only_its_groups_in_its_help():
    from neurocvae.config import group_options

    listing = group_options(*COMMAND_GROUPS["brainage"])
    assert listing.splitlines()[2] == "net: sfcn, sfcn_small"
    assert "arch" not in listing and "hparams_search" not in listing
    template = (config_dir() / "brainage.yaml").read_text()
    assert "${neurocvae.groups:paths,data,net,optim,trainer,logger}" in template


def test_one_paths_setting_moves_the_cache_and_the_run_folders():
    cfg = compose_config("train", ["data.target=t", "data.background=b",
                                   "paths.cache_dir=/scratch/cache"])
    assert cfg.data.cache_dir == "/scratch/cache"
    brainage = compose_config("brainage", ["data.manifest=m.csv", "paths.output_dir=/runs",
                                           "paths.cache_dir=/scratch/cache"])
    assert brainage.out_dir == f"/runs/brainage/{brainage.run_id}"
    assert brainage.data.cache_dir == "/scratch/cache"


def test_selection_thresholds_are_changed_one_by_one_or_replaced_as_documented():
    """conf/brainage.yaml: a dict override merges into the defaults; deleting first replaces."""
    merged = compose_config("brainage", ["selection.thresholds={MDD:2}"]).selection.thresholds
    assert dict(merged) == {"MDD": 2, "diabetes": 0.0, "dual": 0.0}
    replaced = compose_config("brainage", ["~selection.thresholds",
                                           "+selection.thresholds={C1:0,C2:1}"])
    assert dict(replaced.selection.thresholds) == {"C1": 0, "C2": 1}
