"""The runtime pipeline: source -> preprocess -> engine -> postprocess -> sinks.

Capture runs in its own thread behind a bounded queue (:mod:`capture`); sources are opened
from a URI (:mod:`sources`); every stage is timed (:mod:`timing`).
"""
