"""Session throughput figures from a combined part."""

from __future__ import annotations

import numpy as np

from emotf.session.aggregate import Part
from emotf.session.ledger import figures


def test_done_per_hour_counts_from_the_first_movie_found() -> None:
    """One batch of 200 movies found over an hour and done within a second of each other
    is 200 movies in ~1.1 h, not 199 movies per second."""
    found = np.linspace(0.0, 3600.0, 200)
    finished = 4000.0 + np.linspace(0.0, 1.0, 200)
    fig = figures(Part(found=found, finished=finished))
    assert fig["movies_per_hour_found"] == round(3600.0 * 199 / 3600.0, 1)
    assert fig["movies_per_hour_done"] == round(3600.0 * 200 / 4001.0, 1)


def test_no_rate_without_done_movies_or_time() -> None:
    assert figures(Part(found=np.array([5.0])))["movies_per_hour_done"] is None
    same = figures(Part(found=np.array([5.0, 5.0]), finished=np.array([5.0, 5.0])))
    assert same["movies_per_hour_done"] is None and same["movies_per_hour_found"] is None
