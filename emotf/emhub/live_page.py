"""Make a processing folder something EMhub 1.0.2's session pages can render.

Setting ``extra.otf.path`` also sets the session's ``data_path``, and EMhub's *live* session
page (the sessions list's OTF link, and the default session page once ``otf.status`` is not
``created``) opens ``data_path`` as a processing project (``data/processing/__init__.py``):

* a folder holding ``project.sqlite`` is read as a Scipion project;
* any other folder as a RELION one, whose adapter lacks ``get_ctfs_runid`` (error dialog);
* an empty ``data_path`` gives an HTTP 500 (the template serialises undefined values).

So the processing folder gets a ``project.sqlite`` with the one table EMhub reads from it
(``Objects``, empty) and no ``Runs/``: EMhub shows the live page with the session's size,
files, images, OTF status and update time and no CTF plots (it finds no Scipion runs), and
its *Show Workflow* page lists no protocol. An existing ``project.sqlite`` is never touched.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

log = logging.getLogger(__name__)

PROJECT_DB = "project.sqlite"
# Scipion's object table, as EMhub's Scipion adapter reads it (name, parent_id, classname,
# value, label, id); emotf leaves it empty
OBJECTS = (
    "CREATE TABLE IF NOT EXISTS Objects (id INTEGER PRIMARY KEY, parent_id INTEGER, "
    "name TEXT, classname TEXT, value TEXT, label TEXT, comment TEXT, "
    "object_parent_id INTEGER, object_child_id INTEGER, creation DATE)"
)


def ensure_project_db(out_dir: Path) -> Path:
    """Create ``out_dir/project.sqlite`` (temp file + rename) unless it exists."""
    path = Path(out_dir) / PROJECT_DB
    if path.exists():
        return path
    tmp = path.with_name(f".{PROJECT_DB}.tmp")
    tmp.unlink(missing_ok=True)
    con = sqlite3.connect(tmp)
    try:
        con.execute(OBJECTS)
        con.commit()
    finally:
        con.close()
    tmp.replace(path)
    log.info("wrote %s for EMhub's session pages", path)
    return path
