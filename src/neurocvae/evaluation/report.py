"""`report.md` of one evaluated run: the metrics in tables, the figures with what they show."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from neurocvae.files import write_text_atomically

# Columns of comparison tables → where the value sits in metrics.json.
HEADLINE = {
    "active_s": ("salient", "active"), "active_z": ("shared", "active"),
    "ari_s": ("salient", "kmeans", "ari"), "ari_z": ("shared", "kmeans", "ari"),
    "delta_ari": ("delta_ari",), "gmm_ari_s": ("salient", "gmm", "ari"),
    "acc_s": ("salient", "kmeans", "accuracy"),
    "silhouette_s": ("salient", "silhouette"), "silhouette_z": ("shared", "silhouette"),
    "knn_bacc_s": ("salient", "knn_balanced_accuracy"),
    "tau_s_severity": ("salient", "rsa_tau", "severity"),
    "tau_z_severity": ("shared", "rsa_tau", "severity"),
    "tau_s_warp": ("salient", "rsa_tau", "u_warp"), "tau_z_warp": ("shared", "rsa_tau", "u_warp"),
    "tau_s_age": ("salient", "rsa_tau", "age"),
    "r2_age_s": ("salient", "leakage_r2", "age"), "r2_age_z": ("shared", "leakage_r2", "age"),
    "r2_warp_s": ("salient", "leakage_r2", "u_warp"),
    "r2_head_s": ("salient", "leakage_r2", "u_head"),
    "site_bacc_s": ("salient", "site_balanced_accuracy"),
    "auroc_s": ("salient", "auroc_target_vs_background"),
    "auroc_z": ("shared", "auroc_target_vs_background"),
    "energy_bg_tg": ("salient", "energy_ratio"),
    "ve": ("decoded", "variance_explained"), "twin_error": ("decoded", "twin_error"),
    "cf_error": ("decoded", "counterfactual_error"), "gain": ("decoded", "disease_gain"),
    "map_r": ("decoded", "disease_map_correlation"),
    "map_peak_mm": ("decoded", "map_peak_distance_mm"),
}


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The comparison-table columns of one metrics.json (nan where absent)."""
    row = {}
    for column, keys in HEADLINE.items():
        value: Any = metrics
        for key in keys:
            value = value.get(key, math.nan) if isinstance(value, dict) else math.nan
        row[column] = float(value) if isinstance(value, (int, float)) else math.nan
    return row


COLUMN_NOTES = """Columns (held-out split; `_s` salient space, `_z` shared space):
active: code dimensions whose mean varies over the training scans (variance > 0.01; salient:
over the training targets only; the others have collapsed and are left out; a space with none
gets no metrics);
ari/acc: k-means against the true groups (ARI, matched accuracy); gmm_ari: Gaussian mixtures,
mean of 10 fits; silhouette of the true groups; knn_bacc: 5-NN balanced accuracy;
tau_*: RSA Kendall τ with planted severity (within subtype), the shared warp u_warp, age;
r2_*: cross-validated ridge R² (leakage; head: u_head, the planted head size); site_bacc:
site decoded from s (chance 1/#sites);
auroc: targets vs backgrounds from each space (z should stay near 0.5); energy_bg_tg:
mean ‖s‖² of backgrounds / targets (→ 0); ve: variance explained (pca: 10 components of the
training scans; both on one grid); twin_error: median ‖D([z,0]) − twin‖² / ‖x − twin‖²
(< 1 is good); cf_error: median ‖D([z,0]) − twin‖² / ‖D([z,s]) − x‖² (1: the counterfactual
is as close to the twin as the reconstruction to the scan); gain: median
⟨D(E(x)) − D(E(twin)), x − twin⟩ / ‖x − twin‖², the share of the planted disease the
autoencoder reproduces (1 is all); map_r: median correlation of the model's and the planted
disease maps; map_peak_mm: the largest distance (over groups) from a group's salient-map peak
to its planted centre."""

ROWS = [  # (label, keys under a space)
    ("active dimensions (of all)", ("active",)),
    ("silhouette of the true groups", ("silhouette",)),
    ("k-means ARI / NMI / matched accuracy", ("kmeans",)),
    ("Gaussian-mixture ARI / NMI / accuracy (mean of 10 fits)", ("gmm",)),
    ("5-NN balanced accuracy of the groups", ("knn_balanced_accuracy",)),
    ("targets vs backgrounds AUROC", ("auroc_target_vs_background",)),
    ("site balanced accuracy (leakage)", ("site_balanced_accuracy",)),
]


def _fmt(value: Any) -> str:
    if isinstance(value, dict):
        return " / ".join(_fmt(v) for v in value.values())
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.3f}"
    return str(value)


def space_table(metrics: dict[str, Any]) -> str:
    spaces = [s for s in ("salient", "shared") if s in metrics]
    lines = ["| metric | " + " | ".join(spaces) + " |", "|---|" + "---|" * len(spaces)]
    for label, (key,) in ROWS:
        values = [f"{metrics[s]['active']} of {metrics[s]['dimensions']}" if key == "active"
                  else _fmt(metrics[s].get(key, math.nan)) for s in spaces]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    for kind, label in (("rsa_tau", "RSA Kendall τ with"), ("leakage_r2", "leakage R² of")):
        columns = sorted({c for s in spaces for c in metrics[s].get(kind, {})})
        for column in columns:
            lines.append(f"| {label} {column} | " + " | ".join(
                _fmt(metrics[s][kind].get(column, math.nan)) if kind in metrics[s] else "–"
                for s in spaces) + " |")
    return "\n".join(lines)


def baseline_table(baselines: dict[str, dict[str, Any]]) -> str:
    lines = ["| baseline | k-means ARI | silhouette | τ severity | τ u_warp | R² age | AUROC |",
             "|---|---|---|---|---|---|---|"]
    for name, m in baselines.items():
        row = headline(m)
        lines.append(f"| {name} | " + " | ".join(_fmt(row[c]) for c in (
            "ari_s", "silhouette_s", "tau_s_severity", "tau_s_warp", "r2_age_s", "auroc_s"))
            + " |")
    return "\n".join(lines)


FIGURE_SECTIONS = {  # figure name → heading and what to look for in it
    "embedding": ("Latent spaces in 2-D",
                  "Test targets coloured by group and backgrounds in grey, in each space. "
                  "Groups that form separate clouds in the salient space (and mix in the shared "
                  "one) are what a working model shows."),
    "curves": ("Training curves",
               "Per epoch: every loss term (train solid, validation dashed), the β and γ "
               "schedules, and the discriminator's accuracy (0.5 = chance)."),
    "examples": ("Example scans",
                 "One test target per group, on the axial slice of its largest planted "
                 "difference (without a twin: of the model's): the input, its reconstruction, "
                 "the healthy counterfactual D([z,0]), the planted healthy twin when there is "
                 "one, and the model's and the planted disease maps, each with its own colour "
                 "range (in its corner)."),
}


def _latent_section(metrics: dict[str, Any]) -> list[str]:
    """The header, the table of both spaces and the decoded measures."""
    n, decoded = metrics["n"], metrics["decoded"]
    return [
        "# Evaluation report", "",
        f"Checkpoint `{metrics['checkpoint']}`, **{metrics['split']}** split: {n['target']} "
        f"targets ({', '.join(f'{g} {c}' for g, c in metrics['groups'].items())}) and "
        f"{n['background']} backgrounds. Codes are encoder means, standardised with the "
        "training scans' statistics. Ground truth: "
        f"{'`' + metrics['ground_truth'] + '`' if metrics['ground_truth'] else 'none found'}.",
        "",
        "## Latent spaces", "",
        "The salient space should separate the disease groups (high ARI, silhouette, τ with "
        "severity) and carry no nuisance (low leakage R², site accuracy near chance); the shared "
        "space should not tell targets from backgrounds (AUROC near 0.5).", "",
        space_table(metrics), "",
        f"- ΔARI (salient − shared): {_fmt(metrics.get('delta_ari', math.nan))}",
        f"- Background/target salient energy ‖s‖²: "
        f"{_fmt(metrics.get('salient', {}).get('energy_ratio', math.nan))} (→ 0 is good)",
        f"- Variance explained: {_fmt(decoded['variance_explained'])}",
        f"- Twin error (median ‖D([z,0]) − twin‖² / ‖x − twin‖², {decoded['twins']} patients "
        f"with a planted healthy twin; < 1 is good): {_fmt(decoded['twin_error'])}",
        f"- Counterfactual error (median ‖D([z,0]) − twin‖² / ‖D([z,s]) − x‖²; 1 means the "
        f"disease is removed down to the reconstruction error): "
        f"{_fmt(decoded.get('counterfactual_error', math.nan))}",
        f"- Disease gain (median ⟨D(E(x)) − D(E(twin)), x − twin⟩ / ‖x − twin‖², the share of "
        f"the planted disease the autoencoder reproduces; 1 is all): "
        f"{_fmt(decoded.get('disease_gain', math.nan))}",
        f"- Disease-map correlation (median r of D([z,s]) − D([z,0]) with x − twin): "
        f"{_fmt(decoded['disease_map_correlation'])}", ""]


def _salient_map_section(metrics: dict[str, Any]) -> list[str]:
    """Each target group's mean salient map: its picture, file, peak and planted distance."""
    text = ["## Salient maps", "",
            f"Per target group, the mean of D([z,s]) − D([z,0]) over its {metrics['split']} "
            "scans, "
            "saved as NIfTI in the model's input space and drawn over the MNI152 template, "
            "values under 20 % of the peak hidden. With a synthetic cohort the cut goes "
            "through the group's planted pattern centre (yellow marker), else through the "
            "map's peak; a working model shows its colour at the marker.", ""]
    if metrics.get("salient", {}).get("active") == 0:
        text += ["**The salient space has collapsed (no active dimension), so these maps "
                 "show the decoder's response to near-prior codes, not disease patterns.**",
                 ""]
    for m in metrics["salient_maps"]:
        planted = ", ".join(f"{name} {d} mm" for name, d in m["planted_distance_mm"].items())
        picture = [f"![{m['group']}]({m['png']})", ""] if m["png"] else []
        text += [f"### {m['group']}", "", *picture,
                 f"`{m['nifti']}`; peak {m['peak_value']:+.4f} at {m['peak_mm']} mm"
                 + (f"; distance from the peak to the planted centre: {planted}."
                    if planted else "."), ""]
    return text


def _beyond_training_section(rows: list[dict[str, Any]]) -> list[str]:
    """The held-out scans whose codes lie beyond every training scan's (`beyond_training`)."""
    text = ["## Scans beyond the training range", "",
            "Held-out scans whose codes lie farther from the training scans (Mahalanobis "
            "distance on the active dimensions) than any training scan does. The model "
            "extrapolates on them: read their codes, maps and reconstructions with care (a "
            "control here is not evidence of disease). Of scans drawn like the training scans, "
            "about one in (training scans + 1) lies beyond them by chance.", ""]
    if not rows:
        return [*text, "None.", ""]
    table = pd.DataFrame(rows)
    table["times_training_max"] = table["distance"] / table["training_max"]
    return [*text, markdown_table(table), ""]


def write_report(out_dir: Path, metrics: dict[str, Any], figures: dict[str, Path]) -> Path:
    """Write `<out_dir>/report.md` (whole or not at all) and return its path."""
    text = _latent_section(metrics)
    if "beyond_training" in metrics:
        text += _beyond_training_section(metrics["beyond_training"])
    if metrics.get("baselines"):
        text += ["## Baselines on the same volumes (their single space)", "",
                 baseline_table(metrics["baselines"]), ""]
    for name, (heading, reading) in FIGURE_SECTIONS.items():
        if name in figures:
            text += [f"## {heading}", "", f"![{name}]({figures[name].name})", "", reading, ""]
    if metrics.get("salient_maps"):
        text += _salient_map_section(metrics)
    path = out_dir / "report.md"
    write_text_atomically(path, "\n".join(text))
    return path


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (numbers to 3 decimals, nan as –)."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_fmt(v).replace("|", "\\|") for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)
