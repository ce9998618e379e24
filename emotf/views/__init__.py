"""Session views kept up to date batch by batch, at a cost that depends on the new batch.

:mod:`emotf.views.session_stars` keeps the session-wide RELION STAR files (``movies.star``,
``micrographs_ctf.star``, ``particles.star``, ``micrographs_accepted.star``, ...) extended
from per-batch parts (:mod:`emotf.views.star_parts`) instead of rewriting them from every
record; :class:`emotf.batches.Owners` tells which rows a ``retry-failed`` batch supersedes.
"""
