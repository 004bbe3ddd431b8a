"""The synthetic-cohort recipe (docs/science.md §8): typed, validated before any file is written."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from neurocvae.data.cohort import GROUPS, HEALTHY, problem_list
from neurocvae.errors import InputError
from neurocvae.synthetic.grid import Grid
from neurocvae.synthetic.template import Template

Point = tuple[float, float, float]
HEAD_SPACES = ("native", "registered")
MAX_ANATOMY_MM = 5.0  # RMS of a subject's own smooth displacement
MAX_JITTER_MM = 10.0  # SD of a pattern's per-subject displacement, per axis
FOLD_FREE = 0.5  # |a| of a radial bump warp stays below this (fold-free up to a = 2.24; §8.3)
MAX_Z = 3.0  # standard-normal factors are clipped to ±MAX_Z


SECTIONS = {  # the keys of each nested section of synth.yaml that `Recipe.from_dict` reads
    "grid": {"voxel_size", "shape", "centre_mm", "name"},
    "age": {"min", "max"},
    "age_acceleration": {"enabled", "mean", "sd"},
    "ageing": {"reference_age", "years_per_unit", "ventricle_growth", "ventricle_sigma_mm",
               "ventricle_centres_mm", "gm_loss"},
    "head_size": {"sd", "sex_difference", "centre_mm", "space", "residual_sd"},
    "shared_warp": {"centre_mm", "sigma_mm", "amplitude"},
    "severity": {"min", "max"},
    "anatomy": {"rms_mm"},
    "disease_strength": {"f", "tolerance", "pilot_patients"},  # read by synthetic.strength
}


@dataclass(frozen=True)
class Pattern:
    """A disease pattern: GM-weighted intensity loss plus radial atrophy around a centre.

    At severity d, tissue within the bump loses a fraction `intensity·d·g·GM` of its intensity and
    the bump's pull-back warp has amplitude `warp·d` (> 0 shrinks tissue toward the centre,
    < 0 expands it; 0 with an intensity loss is an intensity-only pattern). g is a Gaussian of
    `sigma_mm`, tapered to zero at 3σ (the pattern's support). With `jitter_mm` > 0 the centre
    moves per subject by a Gaussian offset of that SD per axis (clipped at 3 SD): a pattern
    that is not in exactly the same place in everyone.
    """

    groups: tuple[str, ...]
    centre_mm: Point
    sigma_mm: float
    warp: float
    intensity: float
    jitter_mm: float = 0.0


@dataclass(frozen=True)
class Site:
    """A scanner: global intensity scale, Gaussian noise SD, a smooth bias field (≤ strength)."""

    name: str
    intensity_scale: float
    noise_sd: float
    bias_strength: float


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a synthetic cohort; same recipe and seed → same volumes.

    The values (and their meaning) are documented in `conf/synth.yaml`.
    """

    grid: Grid
    counts: dict[str, int]
    sites: tuple[Site, ...]
    patterns: dict[str, Pattern]
    seed: int
    age_range: tuple[float, float]
    male_fraction: float
    age_acceleration: dict[str, float]  # mean δ (years) per group; empty when disabled
    age_acceleration_sd: float
    reference_age: float  # t = (age + δ − reference_age) / years_per_unit
    years_per_unit: float
    ventricle_growth: float  # ventricle scale 1 + growth·t
    ventricle_sigma_mm: float
    ventricle_centres_mm: tuple[Point, ...]
    gm_loss: float  # x ← x − gm_loss·t·GM
    head_size_sd: float  # head scale 1 + sd·u, u ~ N(0, 1)
    head_size_sex_difference: float  # males +½, females −½ of this
    head_centre_mm: Point
    shared_warp_centre_mm: Point
    shared_warp_sigma_mm: float
    shared_warp_amplitude: float  # a = amplitude·u, u ~ N(0, 1)
    severity_range: tuple[float, float]
    twins: bool
    anatomy_rms_mm: float = 0.0  # each subject's own smooth shape (RMS displacement, mm)
    head_size_space: str = "native"  # registered: an affine registration removed global scale
    head_size_residual_sd: float = 0.005  # registered: the scale it leaves, 1 + residual_sd·u
    age_by_group: dict[str, tuple[float, float]] = field(default_factory=dict)  # else age_range
    site_mix: dict[str, dict[str, float]] = field(default_factory=dict)  # group → site weights

    def ages_of(self, group: str) -> tuple[float, float]:
        """The age range (years) of `group`'s subjects."""
        return self.age_by_group.get(group, self.age_range)

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> Recipe:
        """Build from the `synth.yaml` layout (a resolved, plain dict) and validate."""
        unknown = [f"{section}.{key}" for section, allowed in SECTIONS.items()
                   for key in cfg.get(section) or {} if key not in allowed]
        if unknown:
            raise InputError(f"recipe: unknown key(s) {unknown}; "
                             + "; ".join(f"{section} has {sorted(allowed)}"
                                         for section, allowed in SECTIONS.items()
                                         if any(u.startswith(f"{section}.") for u in unknown)))
        for key, shape in (("age_by_group", "{group: {min: …, max: …}}"),
                           ("site_mix", "{group: {site: weight, …}}")):
            value = cfg.get(key)
            if value is not None and not (isinstance(value, dict) and all(
                    isinstance(entry, dict) for entry in value.values())):
                raise InputError(f"recipe: {key}={value!r}; expected {shape}")
        try:
            grid = cfg["grid"]
            ageing, head, warp = cfg["ageing"], cfg["head_size"], cfg["shared_warp"]
            acceleration = cfg["age_acceleration"]
            recipe = cls(
                grid=Grid(float(grid["voxel_size"]), tuple(grid["shape"]),
                          tuple(grid["centre_mm"]), grid.get("name", "grid")),
                counts=dict(cfg["counts"]),
                sites=tuple(Site(**site) for site in cfg["sites"]),
                patterns={
                    name: Pattern(**{**p, "groups": tuple(p["groups"]),
                                     "centre_mm": tuple(p["centre_mm"])})
                    for name, p in cfg["patterns"].items()
                },
                seed=int(cfg["seed"]),
                age_range=(float(cfg["age"]["min"]), float(cfg["age"]["max"])),
                male_fraction=float(cfg["male_fraction"]),
                age_acceleration=dict(acceleration["mean"]) if acceleration["enabled"] else {},
                age_acceleration_sd=float(acceleration["sd"]) if acceleration["enabled"] else 0.0,
                reference_age=float(ageing["reference_age"]),
                years_per_unit=float(ageing["years_per_unit"]),
                ventricle_growth=float(ageing["ventricle_growth"]),
                ventricle_sigma_mm=float(ageing["ventricle_sigma_mm"]),
                ventricle_centres_mm=tuple(tuple(c) for c in ageing["ventricle_centres_mm"]),
                gm_loss=float(ageing["gm_loss"]),
                head_size_sd=float(head["sd"]),
                head_size_sex_difference=float(head["sex_difference"]),
                head_centre_mm=tuple(head["centre_mm"]),
                shared_warp_centre_mm=tuple(warp["centre_mm"]),
                shared_warp_sigma_mm=float(warp["sigma_mm"]),
                shared_warp_amplitude=float(warp["amplitude"]),
                severity_range=(float(cfg["severity"]["min"]), float(cfg["severity"]["max"])),
                twins=bool(cfg["twins"]),
                anatomy_rms_mm=float((cfg.get("anatomy") or {}).get("rms_mm", 0.0)),
                head_size_space=str(head.get("space", "native")),
                head_size_residual_sd=float(head.get("residual_sd", 0.005)),
                age_by_group={group: (float(ages["min"]), float(ages["max"]))
                              for group, ages in (cfg.get("age_by_group") or {}).items()},
                site_mix={group: {site: float(w) for site, w in weights.items()}
                          for group, weights in (cfg.get("site_mix") or {}).items()},
            )
        except KeyError as missing:
            raise InputError(f"recipe: missing key {missing}") from None
        except TypeError as error:  # e.g. an unknown key inside a pattern or site
            raise InputError(f"recipe: {error}") from None
        recipe.validate()
        return recipe

    @property
    def n_subjects(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def hash(self) -> str:
        """A short digest of the recipe, recorded in the ground truth."""
        text = json.dumps(self.to_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def validate(self) -> None:
        """Raise `InputError` listing every problem (key, value, what was expected)."""
        problems = [*self._cohort_problems(), *self._anatomy_problems(),
                    *self._pattern_problems(), *self._site_problems(), *self._region_problems()]
        if problems:
            raise InputError("invalid recipe:\n" + problem_list(problems))

    def _cohort_problems(self) -> list[str]:
        """The grid, the groups and their counts, ages, sexes and age accelerations."""
        known = ", ".join(GROUPS)
        problems: list[str] = []
        g = self.grid
        if not g.voxel_size > 0:
            problems.append(f"grid.voxel_size: {g.voxel_size} mm; expected > 0")
        if len(g.shape) != 3 or any(int(n) != n or n < 1 for n in g.shape):
            problems.append(f"grid.shape: {list(g.shape)}; expected three positive integers")
        for group, n in self.counts.items():
            if group not in GROUPS:
                problems.append(f"counts.{group}: unknown group '{group}'; known groups: {known}")
            if not isinstance(n, int) or n < 0:
                problems.append(f"counts.{group}: {n}; expected a non-negative integer")
        if self.n_subjects < 1:
            problems.append("counts: no subjects; expected at least one")
        for group in self.age_acceleration:
            if group not in GROUPS:
                problems.append(f"age_acceleration.mean.{group}: unknown group '{group}'; "
                                f"known groups: {known}")
        for where, (lo, hi) in [("age", self.age_range),
                                *((f"age_by_group.{g}", r) for g, r in self.age_by_group.items())]:
            if not 0 < lo < hi:
                problems.append(f"{where}: min {lo}, max {hi}; expected 0 < min < max")
        for group in [*self.age_by_group, *self.site_mix]:
            if group not in GROUPS:
                problems.append(f"age_by_group/site_mix: unknown group '{group}'; known groups: "
                                f"{known}")
        names = {site.name for site in self.sites}
        for group, weights in self.site_mix.items():
            unknown = sorted(set(weights) - names)
            if unknown or any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
                problems.append(f"site_mix.{group}: {weights}; expected weights ≥ 0 (not all 0) "
                                f"of the sites {sorted(names)}")
        if not 0 <= self.male_fraction <= 1:
            problems.append(f"male_fraction: {self.male_fraction}; expected within [0, 1]")
        if self.age_acceleration_sd < 0:
            problems.append(f"age_acceleration.sd: {self.age_acceleration_sd}; expected ≥ 0")
        return problems

    def _anatomy_problems(self) -> list[str]:
        """Ageing, head size and the shared warp: fold-free at the extremes."""
        problems: list[str] = []
        if self.years_per_unit <= 0:
            problems.append(f"ageing.years_per_unit: {self.years_per_unit}; expected > 0")
        else:
            for t in self._t_extremes():
                scale = 1 + self.ventricle_growth * t
                if not 1 / (1 + FOLD_FREE) <= scale <= 1 / (1 - FOLD_FREE):
                    problems.append(
                        f"ageing.ventricle_growth: {self.ventricle_growth} gives ventricle scale "
                        f"{scale:.2f} at the age extremes; expected within "
                        f"[{1 / (1 + FOLD_FREE):.2f}, {1 / (1 - FOLD_FREE):.2f}]")
                    break
        head_max = MAX_Z * self.head_size_sd + abs(self.head_size_sex_difference) / 2
        if self.head_size_sd < 0 or head_max >= FOLD_FREE:
            problems.append(f"head_size: sd {self.head_size_sd}, sex_difference "
                            f"{self.head_size_sex_difference}; expected "
                            f"0 ≤ {MAX_Z:g}·sd + |sex_difference|/2 < {FOLD_FREE}")
        if self.head_size_space not in HEAD_SPACES:
            problems.append(f"head_size.space: {self.head_size_space!r}; expected one of "
                            f"{HEAD_SPACES}")
        if not 0 <= MAX_Z * self.head_size_residual_sd < FOLD_FREE:
            problems.append(f"head_size.residual_sd: {self.head_size_residual_sd}; expected "
                            f"0 ≤ {MAX_Z:g}·residual_sd < {FOLD_FREE}")
        if not 0 <= self.anatomy_rms_mm <= MAX_ANATOMY_MM:
            problems.append(f"anatomy.rms_mm: {self.anatomy_rms_mm}; expected within "
                            f"[0, {MAX_ANATOMY_MM}] mm (a smooth, fold-free deformation)")
        if abs(self.shared_warp_amplitude) * MAX_Z > FOLD_FREE:
            problems.append(f"shared_warp.amplitude: {self.shared_warp_amplitude}; expected "
                            f"|amplitude| ≤ {FOLD_FREE / MAX_Z} (fold-free at {MAX_Z} SD)")
        return problems

    def _pattern_problems(self) -> list[str]:
        """The severity range and each pattern's groups, warp, intensity and width."""
        known = ", ".join(GROUPS)
        problems: list[str] = []
        d_lo, d_hi = self.severity_range
        if not 0 <= d_lo <= d_hi:
            problems.append(f"severity: min {d_lo}, max {d_hi}; expected 0 ≤ min ≤ max")
        for name, p in self.patterns.items():
            for group in p.groups:
                if group not in GROUPS:
                    problems.append(f"patterns.{name}.groups: unknown group '{group}'; "
                                    f"known groups: {known}")
                elif group == HEALTHY:
                    problems.append(f"patterns.{name}.groups: {HEALTHY} must carry no disease")
            if abs(p.warp) * d_hi > FOLD_FREE:
                problems.append(f"patterns.{name}.warp: {p.warp} × severity max {d_hi}; "
                                f"expected |warp·severity| ≤ {FOLD_FREE}")
            if not 0 <= p.intensity * d_hi < 1:
                problems.append(f"patterns.{name}.intensity: {p.intensity} × severity max "
                                f"{d_hi}; expected within [0, 1)")
            if p.sigma_mm <= 0:
                problems.append(f"patterns.{name}.sigma_mm: {p.sigma_mm}; expected > 0")
            if not 0 <= p.jitter_mm <= MAX_JITTER_MM:
                problems.append(f"patterns.{name}.jitter_mm: {p.jitter_mm}; expected within "
                                f"[0, {MAX_JITTER_MM}] mm")
        return problems

    def _site_problems(self) -> list[str]:
        """At least one site, unique names, plausible scanner effects."""
        problems: list[str] = []
        if not self.sites:
            problems.append("sites: empty; expected at least one site")
        if len({s.name for s in self.sites}) != len(self.sites):
            problems.append("sites: names must be unique")
        for s in self.sites:
            if s.intensity_scale <= 0 or s.noise_sd < 0 or not 0 <= s.bias_strength < 0.5:
                problems.append(f"sites.{s.name}: {s}; expected intensity_scale > 0, "
                                "noise_sd ≥ 0, 0 ≤ bias_strength < 0.5")
        return problems

    def _t_extremes(self) -> tuple[float, float]:
        deltas = list(self.age_acceleration.values()) or [0.0]
        spread = MAX_Z * self.age_acceleration_sd
        ranges = [self.age_range, *self.age_by_group.values()]
        lo = min(r[0] for r in ranges) + min(deltas) - spread
        hi = max(r[1] for r in ranges) + max(deltas) + spread
        return ((lo - self.reference_age) / self.years_per_unit,
                (hi - self.reference_age) / self.years_per_unit)

    def effect_centres(self) -> dict[str, Point]:
        """Every region the recipe plants an effect at, by its recipe key."""
        centres = {f"patterns.{name}.centre_mm": p.centre_mm for name, p in self.patterns.items()}
        centres["shared_warp.centre_mm"] = self.shared_warp_centre_mm
        for i, c in enumerate(self.ventricle_centres_mm):
            centres[f"ageing.ventricle_centres_mm[{i}]"] = c
        return centres

    def _region_problems(self) -> list[str]:
        if self.grid.voxel_size <= 0:
            return []
        template = Template.load()
        problems = []
        for key, centre in self.effect_centres().items():
            if len(centre) != 3 or not np.all(np.isfinite(centre)):
                problems.append(f"{key}: {list(centre)}; expected three MNI coordinates in mm")
            elif not template.in_brain(centre):
                problems.append(f"{key}: {list(centre)} mm lies outside the MNI152 brain mask")
            elif not self.grid.contains(centre):
                problems.append(f"{key}: {list(centre)} mm lies outside the grid's field of view")
        return problems
