"""plan: `JobSpec` + variables + provenance → the ordered phases and commands of one run.

Pure: `--dry-run` prints exactly what a run would do. May import `spec` and `podmagic.errors`;
never `run`, `backends` or `ui`. What a plan asks of a pod (`PodRequest`, `Launch`) is its own
data (`plan.requests`); staging selection reads the project's files and git, nothing else.
"""
