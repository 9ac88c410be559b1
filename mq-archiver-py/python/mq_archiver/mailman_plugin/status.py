"""What the plugin holds and what went wrong, readable by any process
without the spool's lock.

The ``mq`` runner is the one process with the native client and its
spool, and the spool's journal may be opened by one process only. So the
runner writes what it knows (the spool's depth, oldest age, stuck record,
counters, and its own last error) to ``status.json`` beside the spool
(:func:`write_status`, by rename, at most once a second between entries
and while it retries one; not during a publish that blocks), and ``mailman
mq status`` reads that file and looks at ``queue/mq`` and the parked
directory itself (:func:`read_status`).
"""

import json
import os
import time
from typing import Any, Dict, Optional

#: How often the runner rewrites the status file while working.
WRITE_INTERVAL = 1.0


def _paths():
    """(status file, parked directory, the settings error or None): from
    the plugin's settings, or the defaults under ``$VAR_DIR/mq-archiver``
    when the settings cannot be read, so that a configuration error is
    reported rather than hidden behind a traceback."""
    from mailman.config import config

    from ..mailman import SettingsError, _get_settings

    try:
        settings = _get_settings()
        return settings.status_file, settings.parked_dir, None
    except SettingsError as error:
        home = os.path.join(config.VAR_DIR, "mq-archiver")
        return os.path.join(home, "status.json"), os.path.join(home, "parked"), str(error)


def status_path() -> str:
    """``$VAR_DIR/mq-archiver/status.json``, or ``status_file`` in the
    plugin's ``[general]`` settings."""
    return _paths()[0]


def write_status(spool, last_error: Optional[Dict[str, Any]], entry: Optional[str]) -> None:
    """Replaces the status file (temp file, then rename): ``spool`` is the
    client's ``SpoolStatus`` or None, ``last_error`` ``{"at", "error"}``,
    ``entry`` what the runner is retrying now."""
    report = {
        "pid": os.getpid(),
        "at": time.time(),
        "spool": None if spool is None else {
            "depth": spool.depth,
            "oldest_age": spool.oldest_age,
            "spooled": spool.spooled,
            "drained": spool.drained,
            "rejected": spool.rejected,
            "stuck_seq": spool.stuck_seq,
            "stuck_error": spool.stuck_error,
        },
        "last_error": last_error,
        "retrying": entry,
    }
    path = status_path()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(report, f)
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _queue(directory: str, now: float) -> Dict[str, Any]:
    """Depth and oldest age of a Mailman queue directory, from the file
    names (``<time>+<digest>.pck``; ``.bak`` is the entry in hand)."""
    entries = []
    in_hand = []
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            base, ext = os.path.splitext(name)
            if ext not in (".pck", ".bak"):
                continue
            try:
                entries.append(float(base.split("+", 1)[0]))
            except ValueError:
                continue
            if ext == ".bak":
                in_hand.append(base)
    return {
        "depth": len(entries),
        "oldest_age": (now - min(entries)) if entries else None,
        "in_hand": sorted(in_hand),
    }


def read_status() -> Dict[str, Any]:
    """The plugin's state: ``queue`` (``queue/mq``), ``parked`` (how many
    mails and event batches wait in the parked directory), ``runner``
    (the last status file: its age, whether its pid is alive, the spool,
    the last error), ``status_file``, and ``settings_error`` (why the
    plugin's settings cannot be read, or None). Takes no lock."""
    from mailman.config import config

    from ..mailman import NAME

    now = time.time()
    path, parked_dir, settings_error = _paths()
    queue = _queue(os.path.join(config.QUEUE_DIR, NAME), now)
    parked = 0
    if os.path.isdir(parked_dir):
        parked = sum(1 for name in os.listdir(parked_dir)
                     if name.endswith(".eml") or name.endswith(".events.json"))
    runner = None
    try:
        with open(path, encoding="utf-8") as f:
            runner = json.load(f)
        runner["age"] = now - runner["at"]
        runner["alive"] = _alive(int(runner["pid"]))
    except FileNotFoundError:
        runner = None
    except (OSError, ValueError, KeyError, TypeError) as error:
        runner = {"unreadable": f"{type(error).__name__}: {error}"}
    return {"queue": queue, "parked": parked, "runner": runner, "status_file": path,
            "settings_error": settings_error}


def _age(seconds: Optional[float]) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def format_status(report: Dict[str, Any]) -> str:
    """The report as lines for an operator."""
    queue = report["queue"]
    lines = [f"queue/mq      depth {queue['depth']}, oldest {_age(queue['oldest_age'])}"
             + (f", in hand {', '.join(queue['in_hand'])}" if queue["in_hand"] else "")]
    lines.append(f"parked        {report['parked']}")
    if report.get("settings_error"):
        lines.append(f"SETTINGS      {report['settings_error']}")
    runner = report["runner"]
    if runner is None:
        lines.append(f"mq runner     no status yet ({report['status_file']}): it has not run")
        return "\n".join(lines)
    if "unreadable" in runner:
        lines.append(f"mq runner     status file unreadable: {runner['unreadable']}")
        return "\n".join(lines)
    state = "running" if runner["alive"] else "NOT RUNNING"
    lines.append(f"mq runner     {state} (pid {runner['pid']}), status as of {_age(runner['age'])} ago")
    spool = runner.get("spool")
    if spool is None:
        lines.append("spool         none open (no spool-dir, or the client is not open)")
    else:
        lines.append(
            f"spool         depth {spool['depth']}, oldest {_age(spool['oldest_age'])}; "
            f"spooled {spool['spooled']}, drained {spool['drained']}, rejected {spool['rejected']}"
        )
        if spool.get("stuck_seq") is not None:
            lines.append(f"stuck         record {spool['stuck_seq']}: {spool['stuck_error']}")
    if runner.get("retrying"):
        lines.append(f"retrying      {runner['retrying']}")
    error = runner.get("last_error")
    if error:
        lines.append(f"last error    {_age(report_age(error))} ago: {error['error']}")
    return "\n".join(lines)


def report_age(error: Dict[str, Any]) -> Optional[float]:
    """Seconds since the error was recorded."""
    at = error.get("at")
    return None if at is None else time.time() - at
