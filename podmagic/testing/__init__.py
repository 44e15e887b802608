"""Test helpers shipped with podmagic (a real OpenSSH server for tests and benches).

Nothing here is imported by podmagic itself; tests, benches and simulators
import the helpers they need.
"""
