"""`CohortFolder`: where everything of a rendered synthetic cohort lives.

    <root>/manifest.csv        the cohort table (subject_id, path, age, sex, group, site)
    <root>/ground_truth.csv    every planted factor of every subject, with its twin's path
    <root>/recipe.json         the recipe and its hash
    <root>/volumes/<id>.nii.gz the scans
    <root>/twins/<id>-twin.nii.gz   each patient rendered without its disease
    <root>/truth/brain_mask.nii.gz, pattern_<name>.nii.gz   the planted maps

Paths in the tables are relative to the root. The renderer, the cohort report, the evaluation
and the benchmark all find files through this object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neurocvae.data.cohort import HEALTHY

VOLUMES, TWINS, TRUTH = "volumes", "twins", "truth"  # the subfolders


@dataclass(frozen=True)
class CohortFolder:
    root: Path

    def make_folders(self) -> None:
        """Create the root and its subfolders (a new, empty cohort)."""
        for sub in (VOLUMES, TWINS, TRUTH):
            (self.root / sub).mkdir(parents=True)

    @classmethod
    def of_volume(cls, path: str | Path) -> CohortFolder:
        """The folder a scan of a synthetic cohort (`<root>/volumes/<id>.nii.gz`) belongs to."""
        return cls(Path(path).parent.parent)

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.csv"

    @property
    def ground_truth(self) -> Path:
        return self.root / "ground_truth.csv"

    @property
    def recipe(self) -> Path:
        return self.root / "recipe.json"

    @property
    def truth(self) -> Path:
        return self.root / TRUTH

    @property
    def brain_mask(self) -> Path:
        return self.truth / "brain_mask.nii.gz"

    def pattern_map(self, name: str) -> Path:
        return self.truth / f"pattern_{name}.nii.gz"

    @staticmethod
    def volume_path(subject_id: str) -> str:
        """A scan's path relative to the root."""
        return f"{VOLUMES}/{subject_id}.nii.gz"

    @staticmethod
    def twin_path(twin_id: str) -> str:
        """A twin's path relative to the root."""
        return f"{TWINS}/{twin_id}.nii.gz"

    def is_cohort(self) -> bool:
        """Whether the folder holds a complete rendered cohort (its recipe and manifest)."""
        return self.recipe.is_file() and self.manifest.is_file()

    def has_truth(self) -> bool:
        return self.ground_truth.is_file()

    def read_recipe(self) -> dict[str, Any]:
        """The recipe as written ({} without one: not a synthetic cohort)."""
        return json.loads(self.recipe.read_text())["recipe"] if self.recipe.is_file() else {}

    def planted_patterns(self) -> dict[str, dict[str, Any]]:
        """Pattern name → {centre_mm, centres_mm (every centre), groups (those that carry it)}
        from the recipe ({} without one). A cohort rendered before groups were named lists them
        in the pattern."""
        recipe = self.read_recipe()
        groups = recipe.get("groups", {})
        return {name: {"centre_mm": p["centre_mm"],
                       "centres_mm": [p["centre_mm"], *p.get("more_centres_mm", [])],
                       "groups": p.get("groups") or [
                           g for g, spec in groups.items() if name in spec["patterns"]]}
                for name, p in recipe.get("patterns", {}).items()}

    def controls(self) -> str:
        """The name of the controls' group (HC for a cohort without a recipe)."""
        return self.read_recipe().get("controls", HEALTHY)
