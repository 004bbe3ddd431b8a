"""Evaluation of trained contrastive models: metrics, scores, decoded maps, baselines (PCA,
cPCA), plots, reports, training with its quick check, and the planted-truth benchmark.

    from neurocvae.evaluation import evaluate_run
"""

from neurocvae.lazy import exports

__all__ = ["evaluate_run", "evaluate_sweep", "fit_and_check", "run_benchmark"]
__getattr__, __dir__ = exports(__name__, {
    "evaluate_run": "evaluate", "evaluate_sweep": "evaluate", "fit_and_check": "quick_check",
    "run_benchmark": "benchmark:run"})
