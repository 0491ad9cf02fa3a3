"""lpo-ci: prompt templates tested like code.

Heavy dependencies (litellm, datasets, jinja2) are imported lazily by the
modules that need them, so importing this package stays cheap.
"""

__version__ = "0.1.0"
