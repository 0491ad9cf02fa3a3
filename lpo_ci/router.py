"""Several model servers behind one model name: a litellm Router, passed through.

A ``router`` setting holds a litellm Router ``model_list`` (and Router
settings), either as a ``[tool.lpo_ci.router]`` table in pyproject.toml or as
a YAML file in the litellm proxy's config layout (``model_list`` and
``router_settings``), named by a ``router`` key in ``[tool.lpo_ci]`` or in a
template's spec. A template whose model is one of the list's ``model_name``s
is then served by all of that name's deployments, with litellm's own load
balancing, retries and cooldowns: lpo-ci validates the shape and hands the
rest to ``litellm.Router`` unchanged. Responses are cached under the model
name, so any deployment's answer serves every later run.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import SpecError

YAML_SECTIONS = ("model_list", "router_settings")
# Sections of a litellm proxy config that concern the proxy, not the Router: read past them.
PROXY_ONLY_SECTIONS = ("litellm_settings", "general_settings", "environment_variables", "include",
                       "guardrails", "credential_list", "mcp_servers")
ROUTER_HINT = ('give model_list = [{model_name = "name", litellm_params = {model = "openai/x", '
               'api_base = "http://host:8000/v1"}}, ...] (litellm Router format)')


@dataclass(frozen=True)
class RouterConfig:
    """A validated Router set-up and where it was written (for errors)."""

    model_list: tuple[dict[str, Any], ...]
    settings: dict[str, Any]
    path: str
    line: int | None

    @property
    def model_names(self) -> list[str]:
        return sorted({entry["model_name"] for entry in self.model_list})

    @property
    def identity(self) -> str:
        """Equal for equal set-ups: one Router each, shared by every template that uses it."""
        return json.dumps([self.model_list, self.settings], sort_keys=True, default=str)

    def where(self) -> dict[str, Any]:
        return {"path": self.path, "line": self.line}


def _table_line(pyproject: Path | None) -> int | None:
    """Line of the ``[tool.lpo_ci.router]`` header (or of a ``router =`` key) in pyproject.toml."""
    if pyproject is None or not pyproject.is_file():
        return None
    text = pyproject.read_text(encoding="utf-8")
    match = re.search(r"^[ \t]*\[[ \t]*tool\.lpo_ci\.router[ \t]*\]|^[ \t]*router[ \t]*=", text, re.MULTILINE)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _check_model_list(model_list: Any, path: str, line: int | None) -> tuple[dict[str, Any], ...]:
    if not isinstance(model_list, list) or not model_list:
        raise SpecError("the router needs a non-empty 'model_list'", path=path, line=line, hint=ROUTER_HINT)
    for number, entry in enumerate(model_list, 1):
        what = f"model_list entry {number}"
        if not isinstance(entry, dict):
            raise SpecError(f"{what} must be a table with model_name and litellm_params",
                            path=path, line=line, hint=ROUTER_HINT)
        name, params = entry.get("model_name"), entry.get("litellm_params")
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"{what} needs a 'model_name' (the name templates use as their model)",
                            path=path, line=line, hint=ROUTER_HINT)
        if not isinstance(params, dict) or not isinstance(params.get("model"), str) or not params["model"]:
            raise SpecError(f"{what} ('{name}') needs litellm_params with a 'model' "
                            "(the deployment's litellm model, e.g. openai/llama)",
                            path=path, line=line, hint=ROUTER_HINT)
    return tuple(model_list)


def load_router(value: Any, *, root: Path, origin: tuple[str, int | None]) -> RouterConfig:
    """The Router set-up from a spec's ``router`` value: a table, or a YAML file's path."""
    path, line = origin
    if isinstance(value, dict):
        table = dict(value)
        if path.endswith("pyproject.toml"):
            line = _table_line(Path(path)) or line
        model_list = _check_model_list(table.pop("model_list", None), path, line)
        return RouterConfig(model_list, table, path, line)
    file = (root / str(value)).resolve()
    if not file.is_file():
        raise SpecError(f"router file not found: {file}", path=path, line=line,
                        hint="name a YAML file with a model_list, relative to the project root")
    import yaml

    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SpecError(f"malformed YAML in the router file: {getattr(exc, 'problem', None) or exc}",
                        path=file, line=mark.line + 1 if mark else None,
                        hint="the file must be YAML with model_list (and router_settings)") from None
    if not isinstance(data, dict):
        raise SpecError("the router file must be a YAML mapping with 'model_list'", path=file, line=1,
                        hint=ROUTER_HINT)
    unknown = sorted(set(data) - set(YAML_SECTIONS) - set(PROXY_ONLY_SECTIONS))
    if unknown:
        raise SpecError(f"unknown section '{unknown[0]}' in the router file", path=file,
                        hint=f"the Router reads {' and '.join(YAML_SECTIONS)}")
    settings = data.get("router_settings") or {}
    if not isinstance(settings, dict):
        raise SpecError("'router_settings' must be a mapping of litellm Router arguments", path=file)
    model_list = _check_model_list(data.get("model_list"), str(file), None)
    return RouterConfig(model_list, dict(settings), str(file), None)


def resolve_model(config: RouterConfig, model: str | None, where: dict[str, Any]) -> str:
    """The Router model name a template uses: its model, or the list's only name."""
    names = config.model_names
    if model is None:
        if len(names) == 1:
            return names[0]
        raise SpecError(f"the router serves several models ({', '.join(names)}): name one", **where,
                        hint="set 'model' in the spec or [tool.lpo_ci] to one of the router's model_name values")
    if model not in names:
        raise SpecError(f"model '{model}' is not served by the router (its model names: {', '.join(names)})",
                        **where, hint="use a model_name from the router's model_list, or add a deployment for it")
    return model


class RouterPool:
    """One litellm Router per set-up for the whole run, so load and cooldowns are shared."""

    def __init__(self) -> None:
        self._routers: dict[str, Any] = {}

    def get(self, config: RouterConfig):
        router = self._routers.get(config.identity)
        if router is None:
            from .llm import import_litellm

            litellm = import_litellm()
            try:
                router = litellm.Router(model_list=[dict(e) for e in config.model_list], **config.settings)
            except TypeError as exc:
                raise SpecError(f"the litellm Router refused its settings: {exc}", **config.where(),
                                hint="use argument names of litellm.Router (routing_strategy, num_retries, "
                                     "allowed_fails, cooldown_time, timeout, ...)") from None
            except Exception as exc:  # noqa: BLE001 - litellm's own validation of the model list
                raise SpecError(f"the litellm Router refused its model list: {type(exc).__name__}: {exc}",
                                **config.where(), hint=ROUTER_HINT) from None
            self._routers[config.identity] = router
        return router


def route(spec, root: Path, pool: RouterPool) -> tuple[str, Any] | None:
    """(model name, Router) for a template whose spec names a router, else None."""
    if spec.router is None:
        return None
    config = load_router(spec.router, root=root, origin=spec.origins.get("router", ("pyproject.toml", None)))
    where = spec.where("model") if spec.model else config.where()
    return resolve_model(config, spec.model, where), pool.get(config)
