"""`CohortFolder` names every file the renderer writes, and finds a scan's cohort."""

import pandas as pd

from neurocvae.synthetic import CohortFolder, generate_cohort
from tests.conftest import counts, synth_recipe


def test_the_layout_names_every_file_of_a_rendered_cohort(tmp_path):
    recipe = synth_recipe(*counts(HC=2, MDD=1, diabetes=1, dual=0))
    folder = CohortFolder(generate_cohort(recipe, tmp_path / "cohort", workers=1))
    assert folder.is_cohort() and folder.has_truth()
    assert folder.brain_mask.is_file()
    assert all(folder.pattern_map(name).is_file() for name in recipe.patterns)
    truth = pd.read_csv(folder.ground_truth, keep_default_na=False)
    for row in truth.itertuples():
        assert row.path == CohortFolder.volume_path(row.subject_id)
        assert (folder.root / row.path).is_file()
        assert CohortFolder.of_volume(folder.root / row.path) == folder
        if row.twin_path:
            assert (folder.root / CohortFolder.twin_path(row.twin_id)).is_file()
    assert set(folder.planted_patterns()) == set(recipe.patterns)
    empty = CohortFolder(tmp_path)
    assert not empty.is_cohort() and empty.planted_patterns() == {}
