"""The synthetic-cohort recipe (docs/science.md §8): typed, validated before any file is written."""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from neurocvae.data.cohort import HEALTHY, problem_list
from neurocvae.errors import InputError
from neurocvae.synthetic.grid import Grid
from neurocvae.synthetic.template import Template

Point = tuple[float, float, float]
HEAD_SPACES = ("native", "registered")
MAX_ANATOMY_MM = 5.0  # RMS of a subject's own smooth displacement
MAX_TEXTURE = 0.2  # relative SD of a subject's own intensity texture
MAX_JITTER_MM = 10.0  # SD of a pattern's per-subject displacement, per axis
FOLD_FREE = 0.5  # |a| of a radial bump warp stays below this (fold-free up to a = 2.24; §8.3)
MAX_Z = 3.0  # standard-normal factors are clipped to ±MAX_Z


SECTIONS = {  # the keys of each nested section of synth.yaml that `Recipe.from_dict` reads
    "grid": {"voxel_size", "shape", "centre_mm", "name"},
    "age": {"min", "max", "mean", "sd"},
    "age_acceleration": {"enabled", "sd"},
    "ageing": {"reference_age", "years_per_unit", "ventricle_growth", "ventricle_sigma_mm",
               "ventricle_centres_mm", "gm_loss"},
    "head_size": {"sd", "sex_difference", "centre_mm", "space", "residual_sd"},
    "shared_warp": {"centre_mm", "sigma_mm", "amplitude"},
    "severity": {"min", "max"},
    "anatomy": {"rms_mm", "texture", "texture_mm"},
    "disease_strength": {"f", "tolerance", "pilot_patients"},  # read by synthetic.strength
}


def unknown_keys(where: str, given: Iterable[str], known: Iterable[str]) -> list[str]:
    """A problem line for each key of `given` not in `known`, naming the nearest known one."""
    known = sorted(known)
    problems = []
    for key in given:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1, cutoff=0.5)
            hint = f"did you mean {near[0]!r}? " if near else ""
            problems.append(f"{where}.{key}: unknown key; {hint}known keys: {', '.join(known)}")
    return problems


@dataclass(frozen=True)
class Ages:
    """An age distribution (years): uniform on [min, max], or with `mean` and `sd` a normal
    truncated to [min, max]; drawn stratified within each group."""

    min: float
    max: float
    mean: float | None = None
    sd: float | None = None

    @classmethod
    def from_dict(cls, where: str, values: Any, default: Ages | None = None) -> Ages:
        """From {min, max, mean, sd} (each optional where `default` has it)."""
        if not isinstance(values, dict):
            raise InputError(f"recipe: {where}={values!r}; expected {{min: …, max: …}} "
                             "(uniform), with mean and sd a truncated normal")
        merged = {**(asdict(default) if default else {}),
                  **{key: value for key, value in values.items() if value is not None}}
        try:
            return cls(**{key: None if value is None else float(value)
                          for key, value in merged.items()})
        except TypeError:
            raise InputError(f"recipe: {where}={values!r}; expected min and max (years)") \
                from None

    @property
    def normal(self) -> bool:
        return self.mean is not None or self.sd is not None

    def problems(self, where: str) -> list[str]:
        if not 0 < self.min < self.max:
            return [f"{where}: min {self.min}, max {self.max}; expected 0 < min < max"]
        if self.normal and not (self.mean is not None and self.sd is not None and self.sd > 0
                                and self.min <= self.mean <= self.max):
            return [f"{where}: mean {self.mean}, sd {self.sd}; expected both, sd > 0 and "
                    f"min ≤ mean ≤ max ({self.min}, {self.max})"]
        return []


@dataclass(frozen=True)
class Group:
    """A named group of subjects: how many, the disease patterns they carry (none: controls;
    several: a comorbid group), their mean age acceleration δ (years), and, where it differs
    from the recipe's, their own age distribution, share of males and mix of sites (weights by
    site name; None: balanced), which make a group differ in a nuisance (a confound)."""

    count: int
    patterns: tuple[str, ...] = ()
    age_acceleration: float = 0.0
    age: Ages | None = None
    male_fraction: float | None = None
    site_mix: dict[str, float] | None = None


GROUP_KEYS = {"count", "patterns", "age_acceleration", "age", "male_fraction", "site_mix"}


def _group(name: str, entry: dict[str, Any], acceleration: bool, ages: Ages) -> Group:
    """A `groups.<name>` entry of synth.yaml; δ is 0 unless `acceleration` is enabled; its own
    age settings complete the recipe's `ages`."""
    patterns = entry.get("patterns") or ()
    mix = entry.get("site_mix")
    if mix is not None and not isinstance(mix, dict):
        raise InputError(f"recipe: groups.{name}.site_mix={mix!r}; expected {{site: weight, …}}")
    return Group(
        count=entry["count"],
        patterns=(patterns,) if isinstance(patterns, str) else tuple(patterns),
        age_acceleration=float(entry.get("age_acceleration", 0.0)) if acceleration else 0.0,
        age=(Ages.from_dict(f"groups.{name}.age", entry["age"], ages) if entry.get("age")
             else None),
        male_fraction=(None if entry.get("male_fraction") is None
                       else float(entry["male_fraction"])),
        site_mix=None if mix is None else {site: float(w) for site, w in mix.items()})


@dataclass(frozen=True)
class Pattern:
    """A disease pattern: GM-weighted intensity loss plus radial atrophy around a centre.

    At severity d, tissue within the bump loses a fraction `intensity·d·g·GM` of its intensity and
    the bump's pull-back warp has amplitude `warp·d` (> 0 shrinks tissue toward the centre,
    < 0 expands it; 0 with an intensity loss is an intensity-only pattern). g is a Gaussian of
    `sigma_mm`, tapered to zero at 3σ (the pattern's support). With `jitter_mm` > 0 the centre
    moves per subject by a Gaussian offset of that SD per axis (clipped at 3 SD): a pattern
    that is not in exactly the same place in everyone. `more_centres_mm` are further centres of
    the same pattern (e.g. a network of regions), each an equal bump at the same severity,
    moved by the same offset.
    """

    centre_mm: Point
    sigma_mm: float = 10.0
    warp: float = 0.3
    intensity: float = 0.4
    jitter_mm: float = 0.0
    more_centres_mm: tuple[Point, ...] = ()

    @property
    def centres_mm(self) -> tuple[Point, ...]:
        return (self.centre_mm, *self.more_centres_mm)


PATTERN_KEYS = {"centre_mm", "sigma_mm", "warp", "intensity", "jitter_mm", "more_centres_mm"}


@dataclass(frozen=True)
class Site:
    """A scanner: global intensity scale, Gaussian noise SD, a smooth bias field (≤ strength)."""

    name: str
    intensity_scale: float
    noise_sd: float
    bias_strength: float


SITE_KEYS = {"name", "intensity_scale", "noise_sd", "bias_strength"}


@dataclass(frozen=True)
class Recipe:
    """Everything that determines a synthetic cohort; same recipe and seed → same volumes.

    The values (and their meaning) are documented in `conf/synth.yaml`.
    """

    grid: Grid
    groups: dict[str, Group]
    sites: tuple[Site, ...]
    patterns: dict[str, Pattern]
    seed: int
    age: Ages  # every group's, unless it has its own
    male_fraction: float  # likewise
    age_acceleration_sd: float  # SD of δ around its group's mean (0: δ disabled)
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
    texture: float = 0.0  # each subject's own intensity texture: relative SD within the brain
    texture_mm: float = 6.0  # its smoothness: Gaussian σ (mm) of the filtered white noise
    head_size_space: str = "native"  # registered: an affine registration removed global scale
    head_size_residual_sd: float = 0.005  # registered: the scale it leaves, 1 + residual_sd·u
    controls: str = HEALTHY  # the group without a pattern

    @property
    def counts(self) -> dict[str, int]:
        """Subjects per group, in the recipe's order."""
        return {name: group.count for name, group in self.groups.items()}

    def ages_of(self, group: str) -> Ages:
        """The age distribution of `group`'s subjects."""
        return self.groups[group].age or self.age

    def male_fraction_of(self, group: str) -> float:
        own = self.groups[group].male_fraction
        return self.male_fraction if own is None else own

    def carriers(self, pattern: str) -> list[str]:
        """The groups that carry `pattern`."""
        return [name for name, group in self.groups.items() if pattern in group.patterns]

    @classmethod
    def from_dict(cls, cfg: dict[str, Any]) -> Recipe:
        """Build from the `synth.yaml` layout (a resolved, plain dict) and validate."""
        unknown = [problem for section, allowed in SECTIONS.items()
                   for problem in unknown_keys(section, cfg.get(section) or {}, allowed)]
        for kind, entries, allowed in (("groups", cfg.get("groups"), GROUP_KEYS),
                                       ("patterns", cfg.get("patterns"), PATTERN_KEYS)):
            if entries is not None and not (isinstance(entries, dict) and all(
                    isinstance(entry, dict) for entry in entries.values())):
                raise InputError(f"recipe: {kind}={entries!r}; expected {{name: {{…}}, …}}")
            for name, entry in (entries or {}).items():
                unknown += unknown_keys(f"{kind}.{name}", entry, allowed)
                if kind == "groups" and isinstance(entry.get("age"), dict):
                    unknown += unknown_keys(f"groups.{name}.age", entry["age"], SECTIONS["age"])
        for i, site in enumerate(cfg.get("sites") or []):
            unknown += unknown_keys(f"sites[{i}]", site, SITE_KEYS)
        if unknown:
            raise InputError("recipe:\n" + problem_list(unknown))
        try:
            grid = cfg["grid"]
            ageing, head, warp = cfg["ageing"], cfg["head_size"], cfg["shared_warp"]
            anatomy = cfg.get("anatomy") or {}
            acceleration = cfg["age_acceleration"]
            enabled = bool(acceleration["enabled"])
            ages = Ages.from_dict("age", cfg["age"])
            recipe = cls(
                grid=Grid(float(grid["voxel_size"]), tuple(grid["shape"]),
                          tuple(grid["centre_mm"]), grid.get("name", "grid")),
                groups={name: _group(name, g, enabled, ages)
                        for name, g in cfg["groups"].items()},
                controls=str(cfg.get("controls", HEALTHY)),
                sites=tuple(Site(**site) for site in cfg["sites"]),
                patterns={name: Pattern(**{**p, "centre_mm": tuple(p["centre_mm"]),
                                           "more_centres_mm": tuple(
                                               tuple(c) for c in p.get("more_centres_mm") or ())})
                          for name, p in cfg["patterns"].items()},
                seed=int(cfg["seed"]),
                age=ages,
                male_fraction=float(cfg["male_fraction"]),
                age_acceleration_sd=float(acceleration["sd"]) if enabled else 0.0,
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
                anatomy_rms_mm=float(anatomy.get("rms_mm", 0.0)),
                texture=float(anatomy.get("texture", 0.0)),
                texture_mm=float(anatomy.get("texture_mm", 6.0)),
                head_size_space=str(head.get("space", "native")),
                head_size_residual_sd=float(head.get("residual_sd", 0.005)),
            )
        except KeyError as missing:
            raise InputError(f"recipe: missing key {missing}") from None
        except (TypeError, ValueError) as error:  # e.g. a count that is not a number
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
        """The grid, the groups (counts, patterns, ages, sexes, sites) and the controls."""
        problems: list[str] = []
        g = self.grid
        if not g.voxel_size > 0:
            problems.append(f"grid.voxel_size: {g.voxel_size} mm; expected > 0")
        if len(g.shape) != 3 or any(int(n) != n or n < 1 for n in g.shape):
            problems.append(f"grid.shape: {list(g.shape)}; expected three positive integers")
        if self.n_subjects < 1:
            problems.append("groups: no subjects; expected a count of at least one")
        if self.controls not in self.groups:
            problems.append(f"controls: {self.controls!r} is not one of the groups "
                            f"({', '.join(self.groups)})")
        elif self.groups[self.controls].patterns:
            problems.append(f"groups.{self.controls}.patterns: "
                            f"{list(self.groups[self.controls].patterns)}; the controls "
                            f"({self.controls}) carry no pattern")
        problems += self.age.problems("age")
        if not 0 <= self.male_fraction <= 1:
            problems.append(f"male_fraction: {self.male_fraction}; expected within [0, 1]")
        sites = {site.name for site in self.sites}
        for name, group in self.groups.items():
            where = f"groups.{name}"
            if not isinstance(group.count, int) or isinstance(group.count, bool) \
                    or group.count < 0:
                problems.append(f"{where}.count: {group.count!r}; expected a non-negative "
                                "integer")
            for pattern in group.patterns:
                if pattern not in self.patterns:
                    problems.append(f"{where}.patterns: unknown pattern {pattern!r}; known "
                                    f"patterns: {', '.join(self.patterns)}")
            if group.age is not None:
                problems += group.age.problems(f"{where}.age")
            if group.male_fraction is not None and not 0 <= group.male_fraction <= 1:
                problems.append(f"{where}.male_fraction: {group.male_fraction}; expected "
                                "within [0, 1]")
            mix = group.site_mix
            if mix is not None and (set(mix) - sites or any(w < 0 for w in mix.values())
                                    or not sum(mix.values()) > 0):
                problems.append(f"{where}.site_mix: {mix}; expected weights ≥ 0 (not all 0) "
                                f"of the sites {sorted(sites)}")
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
        if not 0 <= self.texture <= MAX_TEXTURE:
            problems.append(f"anatomy.texture: {self.texture}; expected within "
                            f"[0, {MAX_TEXTURE}] (a relative SD of the intensity)")
        if not self.texture_mm > 0:
            problems.append(f"anatomy.texture_mm: {self.texture_mm}; expected > 0 mm")
        if abs(self.shared_warp_amplitude) * MAX_Z > FOLD_FREE:
            problems.append(f"shared_warp.amplitude: {self.shared_warp_amplitude}; expected "
                            f"|amplitude| ≤ {FOLD_FREE / MAX_Z} (fold-free at {MAX_Z} SD)")
        return problems

    def _pattern_problems(self) -> list[str]:
        """The severity range and each pattern's groups, warp, intensity and width."""
        problems: list[str] = []
        d_lo, d_hi = self.severity_range
        if not 0 <= d_lo <= d_hi:
            problems.append(f"severity: min {d_lo}, max {d_hi}; expected 0 ≤ min ≤ max")
        for name, p in self.patterns.items():
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
        deltas = [group.age_acceleration for group in self.groups.values()] or [0.0]
        spread = MAX_Z * self.age_acceleration_sd
        ranges = [(a.min, a.max) for a in [self.age, *map(self.ages_of, self.groups)]]
        lo = min(r[0] for r in ranges) + min(deltas) - spread
        hi = max(r[1] for r in ranges) + max(deltas) + spread
        return ((lo - self.reference_age) / self.years_per_unit,
                (hi - self.reference_age) / self.years_per_unit)

    def effect_centres(self) -> dict[str, Point]:
        """Every region the recipe plants an effect at, by its recipe key."""
        centres = {f"patterns.{name}.centre_mm": p.centre_mm for name, p in self.patterns.items()}
        for name, p in self.patterns.items():
            for i, c in enumerate(p.more_centres_mm):
                centres[f"patterns.{name}.more_centres_mm[{i}]"] = c
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
