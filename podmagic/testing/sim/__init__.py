"""Simulators of remote control planes, for tests and for trying podmagic offline.

`podmagic.testing.sim.runpod.RunPodSimulator` answers the GraphQL the `runpod` SDK
sends and backs each pod with a real OpenSSH server on loopback. Nothing here
imports `runpod`.
"""
