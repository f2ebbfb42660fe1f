"""Where exports come from and how they are parsed.

``base`` (the :class:`~engine.sources.base.Source` protocol and the shared
export-source base), ``folder`` and ``http`` (the real sources), ``sim`` (the
simulator and its source), ``scripted`` (snapshots given in advance, for tests),
``parse`` (CSV exports to snapshots) and ``factory`` (the source the settings name).
"""
