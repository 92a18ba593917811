"""The ``symphony`` command line (typer; the only package that imports typer).

``app`` is the entry point (``[project.scripts] symphony = "symphony.cli.main:app"``): ``main``
holds the node and client commands, ``bench`` the ``symphony bench ...`` commands, ``demo`` the
local demo swarm, ``render`` the terminal rendering of answers and traces.
"""

from symphony.cli.main import app

__all__ = ["app"]
