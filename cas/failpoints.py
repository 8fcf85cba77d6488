"""Named crash points for fault tests; free unless `VVSTORE_FAILPOINTS` is set.

`VVSTORE_FAILPOINTS="blob.before_rename=kill,download.mid=raise"`: at a named point, `kill`
ends the process at once with SIGKILL (no cleanup, as a power cut would), `raise` raises
:class:`FailpointError`.
"""

from __future__ import annotations

import os
import signal

_SPEC = os.environ.get("VVSTORE_FAILPOINTS", "")
_ACTIVE = dict(item.split("=", 1) for item in _SPEC.split(",") if "=" in item)


class FailpointError(RuntimeError):
    """Raised at an enabled `raise` failpoint."""


def failpoint(name: str) -> None:
    """Stop here if the environment asked for it."""
    if not _ACTIVE:
        return
    action = _ACTIVE.get(name)
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise FailpointError(f"failpoint {name}")
