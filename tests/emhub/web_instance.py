"""Give a test instance what EMhub 1.0.2's own pages need to be driven in a browser.

Run with the EMhub server venv's python, after make_instance.py and before the server
starts: ``python web_instance.py INSTANCE_DIR WORKER``. It adds

* a ``special:news`` project (the dashboard lists its entries), ``config:bookings`` with the
  ``display`` keys the dashboard and the sessions list read;
* ``config:sessions``: ``create_session: {Krios01: create_session_form}`` (the dashboard's
  *New Session* button), the hosts and workflows the create-session form offers;
* the facility's create-session form as instance extras (``extra/``): EMhub 1.0.2 ships
  none that works (its ``create_session_form`` content raises "How to create sessions needs
  to be defined on the extras for each specific EMhub customization").
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(instance: str, worker: str) -> None:
    from emhub.data import DataManager

    dm = DataManager(instance)
    admin = dm.get_user_by(username="admin")
    dm._user = admin  # create_project records its creator
    dm.create_project(title="News", status="special:news", user_id=admin.id, validate=False)
    dm.create_form(
        name="config:bookings",
        definition={"display": {"show_application": False, "show_experiment": False}},
    )
    form = dm.get_form_by(name="config:sessions")
    sessions = dict(form.definition)
    sessions["create_session"] = {"Krios01": "create_session_form"}
    sessions["raw"] = {**sessions.get("raw", {}), "hosts_default": {"Krios01": worker}}
    sessions["otf"] = {
        **sessions.get("otf", {}),
        "hosts": [worker],
        "hosts_default": {"Krios01": worker},
        "workflows": ["emotf", "none"],
        "workflow_default": "emotf",
    }
    dm.update_form(id=form.id, definition=sessions, cache=False)
    shutil.copytree(HERE / "extra", Path(instance) / "extra", dirs_exist_ok=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
