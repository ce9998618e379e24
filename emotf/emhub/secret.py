"""Keep the EMhub password out of the worker's ``/proc/<pid>/environ``.

``/proc/<pid>/environ`` shows the environment a process was *started* with, whatever it
removes later, and every process of the same user (Snakemake, the tools) can read it. So
when the password comes in ``EMHUB_PASSWORD``, the worker reads it once and re-executes
itself (same PID, same argv, which never holds the password) with an environment without
it; the password travels through an inherited pipe whose number is in
``EMOTF_PASSWORD_FD``. The new process reads the pipe to its end and closes it, so nothing
is left to read. ``password_file`` needs none of this.
"""

from __future__ import annotations

import logging
import os
import sys

from ..config import ConfigError

log = logging.getLogger(__name__)

PASSWORD_ENV = "EMHUB_PASSWORD"
PASSWORD_FD_ENV = "EMOTF_PASSWORD_FD"
MAX_PASSWORD_BYTES = 4096  # far below a pipe's buffer: the write never blocks


def reexec_without_password() -> None:
    """If ``EMHUB_PASSWORD`` is set, replace this process by the same command without it;
    returns only when there is nothing to do."""
    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        return
    data = password.encode()
    if len(data) > MAX_PASSWORD_BYTES:
        raise ConfigError(f"{PASSWORD_ENV} is longer than {MAX_PASSWORD_BYTES} bytes")
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, data)
    finally:
        os.close(write_end)
    os.set_inheritable(read_end, True)
    env = {k: v for k, v in os.environ.items() if k not in (PASSWORD_ENV, PASSWORD_FD_ENV)}
    env[PASSWORD_FD_ENV] = str(read_end)
    argv = [sys.executable, *sys.orig_argv[1:]]
    log.info("restarting without %s in the environment (same PID)", PASSWORD_ENV)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.execve(sys.executable, argv, env)


def take_inherited_password() -> str | None:
    """The password handed over by :func:`reexec_without_password` (read once, the pipe
    closed, the variable removed so children do not see a stale number), or None."""
    value = os.environ.pop(PASSWORD_FD_ENV, None)
    if value is None:
        return None
    try:
        fd = int(value)
    except ValueError:
        raise ConfigError(f"{PASSWORD_FD_ENV} is not a file descriptor number") from None
    try:
        with os.fdopen(fd, "rb") as pipe:
            data = pipe.read(MAX_PASSWORD_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read the password from {PASSWORD_FD_ENV}: {exc.strerror}"
        ) from None
    if len(data) > MAX_PASSWORD_BYTES:
        raise ConfigError(f"password from {PASSWORD_FD_ENV} is too long")
    return data.decode()
