"""run: the engine. Executes a plan on one backend, owns every exit path and the one teardown.

`runner` emits events and knows no widgets and no argparse; `store` owns every file of a run
directory. May import `spec`, `plan`, `backends` (through `backends.get_backend` and the
`backends.base` seam) and `podmagic.errors`; never `ui`, IPython, ipywidgets, argparse,
jupyter_server or tornado.
"""
