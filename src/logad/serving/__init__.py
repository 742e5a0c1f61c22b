"""The Ray Serve HTTP service: see :mod:`logad.serving.app` and docs/serving.md.

Importing this package does not import Ray; :mod:`logad.serving.local` starts
and stops the service from Python.
"""
