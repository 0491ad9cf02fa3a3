"""Prompt quality over time: a history of runs kept in the repository.

One record per template per evaluated commit (``record``, with what git and CI
say about the run from ``context``), appended to a store (``store``: a local
folder of JSON lines; ``gitstore``: the same files on an orphan git branch),
read back as per-template series that follow renames (``series``), shown as a
table with a sparkline (``show``, ``sparkline``), an offline HTML dashboard
(``html``) or a trend in the pull-request comment (``trend``), and used by the
gates that only history makes possible (``drift``): a creeping regression
over many changes, and a model that changed under an unchanged prompt.
``hook`` connects it all to a run; ``cli`` is ``lpo-ci history``.
"""
