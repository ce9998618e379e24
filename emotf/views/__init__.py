"""The views of a processing folder, all fed by the session's read model
(:meth:`emotf.session.progress.ProgressReader.snapshot`) and kept at the cost of the new batch.

* :mod:`emotf.views.status_cli` — ``emotf status``; :mod:`emotf.views.report` — ``report.html``;
  :mod:`emotf.views.stats` — the statistics sent to EMhub;
* :mod:`emotf.views.session_stars` — the session-wide RELION STAR files (``movies.star``,
  ``micrographs_ctf.star``, ``particles.star``, ``micrographs_accepted.star``, ...) extended
  from per-batch parts (:mod:`emotf.views.star_parts`) instead of rewritten from every
  record (:class:`emotf.session.batches.Owners` tells which rows a ``retry-failed`` batch
  supersedes); :mod:`emotf.views.star` writes per-batch STAR tables;
* :mod:`emotf.views.outputs` (entry point ``python -m emotf.outputs``) and
  :mod:`emotf.views.output_writer` — the child process the session loop starts after each
  batch; :mod:`emotf.views.made` — never overwrite a top-level file emotf did not write.
"""
