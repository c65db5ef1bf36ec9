"""The operator dashboard (``/ui/``), mounted on the API app by :func:`install`."""

from jobhooks.ui.routes import install

__all__ = ["install"]
