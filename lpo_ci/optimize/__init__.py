"""Bounded Local Prompt Optimization: from a failing template to a token-level patch.

``marks`` chooses the tokens that may change, ``proposers`` proposes edits of
those tokens only, ``search`` runs a budgeted beam search with successive
halving on a dev split and accepts a winner only if it beats the head on a
held-out split by a paired test.
"""

from .budget import Budget
from .search import OptimizationResult, OptimizeOptions, optimize_template

__all__ = ["Budget", "OptimizationResult", "OptimizeOptions", "optimize_template"]
