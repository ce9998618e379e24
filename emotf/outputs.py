"""The stable entry point of the session STAR files and report, for the rules of
processing folders (``from emotf.outputs import write_session_stars``) and
``python -m emotf.outputs FOLDER``; the code is :mod:`emotf.views.outputs`."""

from .views.outputs import main, write_session_stars, write_session_stars_full

__all__ = ["main", "write_session_stars", "write_session_stars_full"]

if __name__ == "__main__":
    raise SystemExit(main())
