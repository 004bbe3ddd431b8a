"""`neurocvae-encode` and `TrainedModel`: a finished run encodes scans it has never seen, read
exactly as in training, and writes maps in each scan's own space."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from neurocvae import TrainedModel
from neurocvae.cli.benchmark import benchmark
from neurocvae.cli.brainage import brainage
from neurocvae.cli.encode import encode
from neurocvae.config import config_dir
from neurocvae.contrastive.discriminator import DiscriminatorWarning
from neurocvae.data.scans import scans_table
from neurocvae.errors import InputError
from neurocvae.synthetic.renderer import generate_cohort
from tests.cli.test_brainage_cli import FAST
from tests.conftest import compose_config, counts, synth_recipe
from tests.evaluation.test_evaluate import TINY_TRAIN

pytestmark = [pytest.mark.filterwarnings(f"ignore::{DiscriminatorWarning.__module__}."
                                         f"{DiscriminatorWarning.__name__}")]
ENCODE_COMMAND = Path(sys.executable).with_name("neurocvae-encode")


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A trained and evaluated cVAE run (benchmark layout: cohort/, runs/cvae/seed0/)."""
    out = tmp_path_factory.mktemp("encode")
    small = ["cohort=['grid=ci','seed=3','groups.HC.count=32','groups.MDD.count=16',"
             "'groups.diabetes.count=16','groups.dual.count=0']",
             "split_fractions={train:0.5,val:0.25,test:0.25}", TINY_TRAIN]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        benchmark.__wrapped__(compose("benchmark", [*small, f"out_dir={out}", "seeds=[0]",
                                                    "only=[cvae]", "baselines=[]"]))
    return out


def las_copy(path: Path, out: Path) -> Path:
    """The volume stored left-to-right flipped (an FSL LAS file, as UK Biobank's): another
    voxel order and affine for the same brain."""
    flipped = nib.as_closest_canonical(nib.load(path)).slicer[::-1, :, :]
    nib.save(nib.Nifti1Image(np.asarray(flipped.dataobj), flipped.affine), out)
    return out


def test_new_scans_are_encoded_as_in_evaluation_and_mapped_into_their_own_space(finished,
                                                                               tmp_path):
    run = finished / "runs" / "cvae" / "seed0"
    evaluated = pd.read_csv(run / "eval" / "latents.csv")
    new = generate_cohort(synth_recipe("seed=4", *counts(HC=2, MDD=1, diabetes=1, dual=0)),
                          tmp_path / "new", workers=1)
    new_table = pd.read_csv(new / "manifest.csv")
    new_table["path"] = [str(new / p) for p in new_table["path"]]
    new_table["subject_id"] = "new-" + new_table["subject_id"]  # ids of their own
    las = las_copy(Path(new_table["path"].iloc[0]), tmp_path / "las.nii.gz")
    seen = evaluated[["subject_id", "group", "age", "role"]].merge(
        pd.read_csv(finished / "cohort" / "manifest.csv")[["subject_id", "path"]])
    seen["path"] = [str(finished / "cohort" / p) for p in seen["path"]]
    scans = pd.concat([seen, new_table[["subject_id", "group", "age", "path"]],
                       pd.DataFrame({"subject_id": ["las"], "group": ["HC"], "age": [60.0],
                                     "path": [str(las)]})], ignore_index=True)
    scans.to_csv(tmp_path / "scans.csv", index=False)

    out = tmp_path / "encoded"
    result = subprocess.run(
        [str(ENCODE_COMMAND), f"run={run}", f"scans={tmp_path / 'scans.csv'}",
         f"out_dir={out}", "maps=[salient_map,counterfactual]", "native=true",
         "batch_size=4"],  # evaluation's batches, so the seen scans meet the same arithmetic
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    codes = pd.read_csv(out / "latents.csv")
    assert codes["subject_id"].tolist() == scans["subject_id"].tolist()
    assert {"group", "age", "path"} <= set(codes.columns)
    columns = [c for c in evaluated.columns if c.startswith(("shared_", "salient_"))]
    again = codes.set_index("subject_id").loc[evaluated["subject_id"], columns].to_numpy()
    np.testing.assert_allclose(again, evaluated[columns].to_numpy(), rtol=1e-5, atol=1e-6)
    assert np.isfinite(codes[columns].to_numpy()).all()

    for row in scans.itertuples():
        source = nib.load(row.path)
        for kind in ("salient_map", "counterfactual"):
            written = nib.load(out / kind / f"{row.subject_id}_{kind}.nii.gz")
            assert written.shape == source.shape
            np.testing.assert_allclose(written.affine, source.affine, atol=1e-5)
    # the flipped copy holds the same brain: its codes are the original's, and its healthy
    # counterfactual, mapped back into its own voxel order, is the original's flipped. It sits
    # elsewhere in a batch, where float32 convolutions may round differently (up to ~1e-4 on
    # AVX-512 CPUs); a wrong voxel order moves the codes by O(1)
    by_id = codes.set_index("subject_id")[columns]
    np.testing.assert_allclose(by_id.loc["las"], by_id.loc[new_table["subject_id"].iloc[0]],
                               rtol=1e-3, atol=1e-3)
    original = nib.load(out / "counterfactual" / f"{new_table['subject_id'].iloc[0]}"
                                                  "_counterfactual.nii.gz").get_fdata()
    flipped = nib.load(out / "counterfactual" / "las_counterfactual.nii.gz").get_fdata()
    assert np.abs(original).max() > 0.1
    np.testing.assert_allclose(flipped[::-1], original, atol=1e-4)


def test_a_checkpoint_copied_alone_reads_scans_as_its_run_did(finished, tmp_path):
    run = finished / "runs" / "cvae" / "seed0"
    alone = tmp_path / "model.ckpt"
    shutil.copy(run / "checkpoints" / "best.ckpt", alone)
    model = TrainedModel.load(alone, batch_size=4)  # evaluation's batches: the same arithmetic
    evaluated = pd.read_csv(run / "eval" / "latents.csv").query("role == 'target'").head(8)
    paths = pd.read_csv(finished / "cohort" / "manifest.csv").set_index("subject_id").loc[
        evaluated["subject_id"], "path"]
    codes = model.encode([finished / "cohort" / p for p in paths])
    columns = [c for c in evaluated.columns if c.startswith(("shared_", "salient_"))]
    np.testing.assert_allclose(codes[columns].to_numpy(), evaluated[columns].to_numpy(),
                               rtol=1e-5, atol=1e-6)
    # backgrounds are read as backgrounds where the table says so, as in evaluation
    backgrounds = pd.read_csv(run / "eval" / "latents.csv").query("role == 'background'").head(4)
    table = backgrounds[["subject_id", "role"]].assign(path=[
        str(finished / "cohort" / p) for p in pd.read_csv(finished / "cohort" / "manifest.csv")
        .set_index("subject_id").loc[backgrounds["subject_id"], "path"]])
    np.testing.assert_allclose(model.encode(table)[columns].to_numpy(),
                               backgrounds[columns].to_numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError, match="row 2 of the scans, column 'role': 'control'"):
        model.encode(table.assign(role=["background", "control", "target", "target"]))
    maps = model.salient_maps([finished / "cohort" / paths.iloc[0]])
    assert maps[0].shape == model.shape
    np.testing.assert_allclose(maps[0].affine, model.affine)
    with pytest.raises(InputError, match="kind='twin'"):
        next(model.volumes([finished / "cohort" / paths.iloc[0]], "twin"))
    with pytest.raises(InputError, match=r"not found: .*missing\.nii\.gz"):
        model.encode([tmp_path / "missing.nii.gz"])


def test_the_worked_example_of_docs_python_md_runs(finished, tmp_path, monkeypatch):
    page = Path(__file__).resolve().parents[2] / "docs" / "python.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    assert len(blocks) == 5
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "demo").mkdir(parents=True)
    (tmp_path / "outputs" / "demo" / "train").symlink_to(finished / "runs" / "cvae" / "seed0")
    brainage(compose_config("brainage", [  # a brain-age run on the same cohort
        *FAST, f"data.manifest={finished / 'cohort' / 'manifest.csv'}",
        f"data.cache_dir={tmp_path / 'cache'}", f"out_dir={tmp_path / 'outputs/demo/brainage'}"]))
    generate_cohort(synth_recipe("seed=1", *counts(HC=8, MDD=4, diabetes=4, dual=0)),
                    tmp_path / "outputs" / "new", workers=1)  # what the page's command renders
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)
    assert len(namespace["codes"]) == 16 and namespace["mean_map"].shape == (24, 24, 24)
    assert namespace["ages"]["bag"].notna().all()
    assert nib.load("outputs/new/salient_map_0.nii.gz").shape == (40, 48, 40)
    assert Path("outputs/new/encoders.onnx").stat().st_size > 10_000
    assert Path("outputs/new/sfcn.onnx").stat().st_size > 10_000


def test_the_exported_encoders_give_the_same_codes_outside_pytorch(finished, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    run = finished / "runs" / "cvae" / "seed0"
    model = TrainedModel.load(run)
    exported = model.export(tmp_path / "encoders.onnx")
    paths = sorted((finished / "cohort" / "volumes").glob("*.nii.gz"))[:3]
    volumes = np.stack([model.preprocessing(p).numpy() for p in paths])  # [3, 1, X, Y, Z]
    shared, salient = onnxruntime.InferenceSession(str(exported)).run(None, {"volume": volumes})
    codes = model.encode(paths)
    # codes have unit spread over the training scans; the trailing shared axes scale float32
    # rounding (sums over every voxel, in another order outside PyTorch) up to ~1e-4
    np.testing.assert_allclose(shared, codes.filter(like="shared_").to_numpy(), atol=1e-3)
    np.testing.assert_allclose(salient, codes.filter(like="salient_").to_numpy(), atol=1e-3)
    assert not list(tmp_path.glob(".encoders.onnx*"))  # nothing half-written left behind


def test_the_command_refuses_what_it_cannot_do_before_reading_the_model(tmp_path, capsys):
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        for overrides, message in (([], "nothing to do"),
                                   ([f"scans={tmp_path}"], "needs out_dir"),
                                   (["scans=x", "out_dir=y", "batch_size=0"], "batch_size")):
            with pytest.raises(SystemExit) as stopped:
                encode(compose("encode", [f"run={tmp_path / 'absent'}", *overrides]))
            assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_scans_read_in_worker_processes_arrive_in_order_and_a_bad_one_is_named(finished,
                                                                             tmp_path):
    model = TrainedModel.load(finished / "runs" / "cvae" / "seed0", batch_size=3)
    paths = sorted((finished / "cohort" / "volumes").glob("*.nii.gz"))[:7]
    table = scans_table(paths)
    alone = list(model.reader.batches(table))
    model.reader.num_workers = 2
    pooled = list(model.reader.batches(table))
    assert [len(b["subject_id"]) for b in pooled] == [3, 3, 1]
    for one, other in zip(alone, pooled, strict=True):
        assert one["subject_id"] == other["subject_id"] and one["path"] == other["path"]
        assert torch.equal(one["image"], other["image"])
        np.testing.assert_array_equal(np.stack(one["affine"]), np.stack(other["affine"]))
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a volume")
    with pytest.raises(InputError, match=re.escape(str(broken))):
        list(model.reader.batches(scans_table([*paths[:4], broken])))
