"""lm-evaluation-harness's own scoring, run from its installed package: the reference
that ``lpo_ci.scoring.lm_eval_modes`` must reproduce.

Only lm-eval's filter, metric and YAML-loading modules are imported (its package
is installed without dependencies: ``pip install --no-deps lm-eval==0.4.13``
plus ``sacrebleu`` and ``word2number``, which those modules import). Each mode
is built from the task's YAML as lm-eval ships it: ``filter_list``,
``metric_list`` and ``generation_kwargs.until``.
"""

from __future__ import annotations

from pathlib import Path

INSTALL_HINT = "pip install --no-deps lm-eval==0.4.13 && pip install sacrebleu word2number"

# mode -> (task YAML under lm_eval/tasks, filter name); <task> is a BBH task
MODE_YAMLS = {
    "gsm8k-strict": ("gsm8k/gsm8k.yaml", "strict-match"),
    "gsm8k-flexible": ("gsm8k/gsm8k.yaml", "flexible-extract"),
    "gsm8k-cot-strict": ("gsm8k/gsm8k-cot.yaml", "strict-match"),
    "gsm8k-cot-flexible": ("gsm8k/gsm8k-cot.yaml", "flexible-extract"),
    "bbh-cot-fewshot": ("bbh/cot_fewshot/<task>.yaml", "get-answer"),
    "bbh-cot-zeroshot-strict": ("bbh/cot_zeroshot/<task>.yaml", "strict-match"),
    "bbh-cot-zeroshot-flexible": ("bbh/cot_zeroshot/<task>.yaml", "flexible-extract"),
    "bbh-zeroshot-strict": ("bbh/zeroshot/<task>.yaml", "strict-match"),
    "bbh-zeroshot-flexible": ("bbh/zeroshot/<task>.yaml", "flexible-extract"),
    "bbh-fewshot": ("bbh/fewshot/<task>.yaml", None),  # no filter_list: lm-eval's default
}


class LmEvalReference:
    """Scores (response, target, input) exactly as lm-eval does for one mode and task."""

    def __init__(self, mode: str, task: str = "boolean_expressions"):
        import lm_eval
        from lm_eval.api.metrics import exact_match_hf_evaluate
        from lm_eval.filters import build_filter_ensemble
        from lm_eval.models.utils import postprocess_generated_text
        from lm_eval.tasks._yaml_loader import load_yaml

        relative, filter_name = MODE_YAMLS[mode]
        config = load_yaml(Path(lm_eval.__file__).parent / "tasks" / relative.replace("<task>", task))
        filters = config.get("filter_list") or [{"name": "none", "filter": [{"function": "take_first"}]}]
        chosen = next(f for f in filters if filter_name is None or f["name"] == filter_name)
        steps = [(step["function"], {k: v for k, v in step.items() if k != "function"})
                 for step in chosen["filter"]]
        self.ensemble = build_filter_ensemble(chosen["name"], steps)
        metric = next(m for m in config["metric_list"] if m["metric"] == "exact_match")
        self.metric_kwargs = {k: v for k, v in metric.items()
                              if k not in ("metric", "aggregation", "higher_is_better")}
        self.until = config["generation_kwargs"]["until"]
        self.exact_match = exact_match_hf_evaluate
        self.postprocess = postprocess_generated_text

    def filtered(self, responses: list[str], sources: list[str]) -> list[str]:
        """lm-eval's filtered answers for many responses at once (one filter pass)."""
        from lm_eval.api.instance import Instance

        instances = []
        for index, (response, source) in enumerate(zip(responses, sources)):
            instance = Instance("generate_until", {"input": source}, ("", {}), index)
            instance.resps = [self.postprocess(response, self.until, None)]
            instances.append(instance)
        self.ensemble.apply(instances)
        return [instance.filtered_resps[self.ensemble.name] for instance in instances]

    def correct(self, filtered: str, target: str) -> bool:
        score = self.exact_match(references=[target], predictions=[filtered], **self.metric_kwargs)
        return bool(score["exact_match"] > 0)
