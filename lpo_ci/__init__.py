"""lpo-ci: prompt templates tested like code.

The public API is what ``__all__`` names (see the README's "API" section);
every other module and name is internal and may change in any release.
Names are imported on first use, so ``import lpo_ci`` stays cheap: the pytest
plugin is loaded in every pytest run of an environment where lpo-ci is installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "EvalResult",
    "GateRules",
    "ItemReport",
    "LpoError",
    "OptimizationResult",
    "OptimizeOptions",
    "Verdict",
    "__version__",
    "evaluate_template",
    "evaluate_template_async",
    "gate_results",
    "read_report",
    "suggest_fix",
    "suggest_fix_async",
    "write_report",
]

# public name -> the module that defines it
_WHERE = {
    "evaluate_template": "api", "evaluate_template_async": "api", "gate_results": "api",
    "suggest_fix": "api", "suggest_fix_async": "api", "read_report": "api", "write_report": "api",
    "Budget": "optimize.budget", "OptimizationResult": "optimize.search", "OptimizeOptions": "optimize.search",
    "EvalResult": "evaluate", "GateRules": "gate", "Verdict": "gate", "ItemReport": "runner",
    "LpoError": "errors",
}

if TYPE_CHECKING:
    from .api import (evaluate_template, evaluate_template_async, gate_results, read_report, suggest_fix,
                      suggest_fix_async, write_report)
    from .errors import LpoError
    from .evaluate import EvalResult
    from .gate import GateRules, Verdict
    from .optimize.budget import Budget
    from .optimize.search import OptimizationResult, OptimizeOptions
    from .runner import ItemReport


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lpo_ci' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value  # the next look-up is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
