"""Files the tool ships: the Jinja2 templates under ``templates/``.

In a wheel they live inside the package; in a source checkout (editable
install) they are the repository's top-level ``templates/`` folder.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def templates_dir() -> Path:
    packaged = Path(__file__).parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "templates"


def resource_environment(**options):
    """A Jinja2 environment over the shipped templates (plain Jinja2: these are ours, not the
    user's); ``options`` add to it, e.g. a ``finalize`` that escapes every output."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    return Environment(loader=FileSystemLoader(str(templates_dir())), undefined=StrictUndefined,
                       trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, **options)


def render_resource(name: str, **context) -> str:
    """Render one of the shipped templates."""
    return resource_environment().get_template(name).render(**context)
