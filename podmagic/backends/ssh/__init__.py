"""ssh: any SSH host as a pod, over one persistent paramiko connection.

May import `backends.base`, `backends.podside`, `plan` data and `podmagic.errors`; never `run`
or `ui`. paramiko is imported only here.
"""
