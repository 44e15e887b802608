"""spec: cell text → a typed, validated `JobSpec` with YAML positions; the key table; templates.

No I/O. May import only the standard library, PyYAML and `podmagic.errors`; never `plan`, `run`,
`backends` or `ui`. Every error is a `SpecError` (a `PodmagicError`) naming its line and column.
"""
