"""The public home of :func:`create_app` (``from easytl.serve import create_app``, as README
shows). The code lives in :mod:`easytl.deploy.serve`; this module only re-exports it."""

from ..deploy.serve import Limits, create_app

__all__ = ["Limits", "create_app"]
