"""Build a minimal EMhub 1.0.2 instance for emotf's integration tests.

Run with the EMhub server venv's python:
    python make_instance.py INSTANCE_DIR REDIS_PORT OTF_ROOT WORKER [WORKER ...]

Creates: admin/admin, otf.worker@emhub.test (password: $EMOTF_TEST_WORKER_PASSWORD),
a PI (jane.doe@emhub.test / doe), resource Krios01, a booking owned by
the PI that covers now (id 1), forms config:hosts (the workers) and config:sessions, and
redis.conf (loopback, no persistence so a restart loses streams like a real Redis crash).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys


def main(instance: str, redis_port: int, otf_root: str, workers: list[str]) -> None:
    from emhub.data import DataManager

    os.makedirs(instance, exist_ok=True)
    dm = DataManager(instance, cleanDb=True)
    dm.create_admin()
    pi = dm.create_user(
        username="jane.doe@emhub.test",
        email="jane.doe@emhub.test",
        password="doe",
        name="Jane Doe",
        roles=["user", "pi"],
        pi_id=None,
    )
    # the account the credential-leak test gives the worker (its password comes from the env)
    dm.create_user(
        username="otf.worker@emhub.test",
        email="otf.worker@emhub.test",
        password=os.environ.get("EMOTF_TEST_WORKER_PASSWORD", "otf-worker"),
        name="OTF Worker",
        roles=["user", "admin"],
        pi_id=None,
    )
    resource = dm.create_resource(
        name="Krios01",
        status="active",
        tags="microscope",
        image="",
        color="#0000ff",
        extra={"requires_application": False},
    )
    now = dm.now()
    dm.create_booking(
        title="emotf test",
        start=now - dt.timedelta(hours=2),
        end=now + dt.timedelta(days=2),
        type="booking",
        resource_id=resource.id,
        owner_id=pi.id,
        creator_id=pi.id,
        operator_id=pi.id,
        check_min_booking=False,
        check_max_booking=False,
    )
    hosts = {name: {"alias": name} for name in workers}
    dm.create_form(name="config:hosts", definition=hosts)
    sessions = {
        "groups": {"jane.doe@emhub.test": "doelab"},
        "acquisition": {
            "Krios01": {
                "voltage": 300,
                "magnification": 105000,
                "pixel_size": 1.0,
                "dose": 1.5,
                "cs": 2.7,
            }
        },
        "raw": {"root": os.path.join(otf_root, "raw")},
        "otf": {"root": otf_root, "relion": {"options": {}}, "scipion": {"options": {}}},
    }
    dm.create_form(name="config:sessions", definition=sessions)
    with open(os.path.join(instance, "redis.conf"), "w") as handle:
        handle.write(f'bind 127.0.0.1\nport {redis_port}\nsave ""\nappendonly no\ndir {instance}\n')
    print(json.dumps({"instance": instance, "booking": 1, "resource": resource.id}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:])
