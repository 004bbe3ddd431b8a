"""The planted-truth synthetic cohort: a recipe, the MNI152 template, smooth warps, the renderer,
the cohort report, and the folder layout they share (`CohortFolder`).

    from neurocvae.synthetic import Recipe, generate_cohort, CohortFolder
"""

from neurocvae.lazy import exports

__all__ = ["CohortFolder", "Recipe", "generate_cohort", "write_cohort_report"]
__getattr__, __dir__ = exports(__name__, {
    "CohortFolder": "layout", "Recipe": "recipe", "generate_cohort": "renderer",
    "write_cohort_report": "report"})
