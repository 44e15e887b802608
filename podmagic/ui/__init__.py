"""ui: every front end. Magics, widgets (run view, sweep view, relaunch), render, log tail, the
command line, the audit commands and `serverext/` (the jupyter_server extension).

Only this layer imports IPython, ipywidgets, argparse, jupyter_server or tornado, and nothing
outside it imports it (`podmagic.load_ipython_extension` aside). It drives the engine through
`run.api`, `run.history`, `run.store` and the events; it never reaches into a backend's pod.
"""
