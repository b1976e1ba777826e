"""Offline evaluation of CallCue's understanding layers on public data sets (../shared/data).

Nothing here runs in the server; `callcue eval ...` (see cli.py) drives it.
"""
