"""The session loop of one processing folder.

* :mod:`~emotf.session.feeder` (with :mod:`~emotf.session.feeder_index`) finds complete
  movies and cuts them into immutable batch manifests (:mod:`~emotf.session.batches`, which
  also holds the one record of which batch holds which movie);
* :mod:`~emotf.session.otf` drives the loop (told by and reporting through
  :mod:`~emotf.session.otf_options`): Snakemake runs (:mod:`~emotf.session.runner`)
  bounded per session and shared across sessions (:mod:`~emotf.session.slots`), one live
  loop per folder (:mod:`~emotf.session.folder_lock`), cluster jobs a killed worker left
  (:mod:`~emotf.session.cluster_jobs`), ``emotf retry-failed`` (:mod:`~emotf.session.retry`);
* :mod:`~emotf.session.progress` is the read model: counts and the combined per-batch
  :class:`~emotf.session.aggregate.Part` (:mod:`~emotf.session.progress_parts`,
  :mod:`~emotf.session.ledger`), kept in the session index
  (:mod:`~emotf.session.session_index`) across restarts.
"""
