"""`edgekd fit`: the most accurate student that meets a device's budget.

1. cost every candidate (architecture x pruning ratio x precision) per device with the estimator,
   before any training (`space.py`); architectures with no variant under any budget never train;
2. proxy: a short KD run per remaining architecture, several at once (one thread each), ranked
   by dev CER (after a few hundred steps every WER is still near 100 %; CER already separates them);
3. the best `top_k` architectures per device train fully; each of their variants under budget is
   built (pruned + KD fine-tuned, exported, quantized) and scored on the test set in onnxruntime;
4. per device: the lowest-WER variant under budget wins (its margins to each budget kept), the
   Pareto front of WER vs RTF vs memory is tabled and plotted, the winner is measured host-pinned
   (and every candidate whose estimate lies within the estimator's error band of a budget), and
   exported + verified like every other artifact;
5. how well the proxy rank predicted the final rank: Spearman rho over the fully trained ones.
"""

from edgekd.fit.budget import Budget, load_budget

__all__ = ["Budget", "FitOptions", "load_budget", "run_fit"]


def __getattr__(name: str):
    """FitOptions and run_fit on first use: they pull in torch, and a bad budget should fail fast."""
    if name in ("FitOptions", "run_fit"):
        from edgekd.fit import search

        return getattr(search, name)
    raise AttributeError(f"module 'edgekd.fit' has no attribute {name!r}")
