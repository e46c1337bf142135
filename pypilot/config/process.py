"""Decode a job's process keys (beyond ContainerPilot) into ``model.ProcessConfig``.

``user`` (a name, or ``uid[:gid]``; ``name:group`` too), ``group``, ``workdir``, ``umask`` (an octal string;
a number is read as the octal digits it shows, as chmod reads them), ``rlimits`` (``{nofile: 1024, core: 0,
nproc: "256:512"}``: a number sets soft and hard, ``"soft:hard"`` each, ``"unlimited"`` either),
``noNewPrivileges`` and ``ppidShim``. A job without any of them gets ``None``: it is started exactly as
ContainerPilot started it (posix_spawn, as root, in pypilot's cwd).

Names are resolved here, once, in PID 1 at load, with ``pwd``/``grp`` (files only in the self-contained build:
no NSS modules there, which is what a container has anyway): an unknown user or group is a config error
naming the job and the name, not a failed start later. The user's supplementary groups come from
``/etc/group`` (``getgrouplist``) and ``HOME``, ``USER`` and ``LOGNAME`` are set from its passwd entry; a
numeric uid with no entry gets ``HOME=/`` and no ``USER``/``LOGNAME`` (Docker's choice for such a uid), its
gid is kept (0) unless given, and it has no supplementary groups.
"""

from __future__ import annotations

from . import model as m

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .errors import Collector

# decode.PROCESS_KEYS too: a job with none of them does not import this module
KEYS = ("user", "group", "workdir", "umask", "rlimits", "noNewPrivileges", "ppidShim")

_RLIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc",
            "rss", "rtprio", "rttime", "sigpending", "stack")
_UNLIMITED = ("unlimited", "infinity")


def _show(raw: Any) -> str:
    from .weak import go_v as _v

    return raw if isinstance(raw, str) else _v(raw)


def decode_process(name: str, d: dict[str, Any], errs: Collector) -> m.ProcessConfig | None:
    if not any(k in d for k in KEYS):
        return None
    kw: dict[str, Any] = {}
    user, group = d.get("user"), d.get("group")
    if user is not None or group is not None:
        ident = _identity(name, user, group, errs)
        if ident is not None:
            kw.update(ident)
    if d.get("workdir"):
        kw["workdir"] = d["workdir"]
    if "umask" in d:
        mask = _umask(d["umask"])
        if mask is None:
            errs.add(f"job[{name}].umask '{_show(d['umask'])}' invalid: must be an octal mode such as "
                     "\"022\"")
        else:
            kw["umask"] = mask
    if "rlimits" in d:
        kw["rlimits"] = _rlimits(name, d["rlimits"], errs)
    kw["no_new_privileges"] = bool(d.get("noNewPrivileges", False))
    kw["ppid_shim"] = bool(d.get("ppidShim", False))
    return m.ProcessConfig(**kw)


def _is_uint(raw: Any) -> bool:
    return (isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0) or (
        isinstance(raw, str) and raw.isascii() and raw.isdigit())


def _identity(name: str, user: Any, group: Any, errs: Collector) -> dict[str, Any] | None:
    import grp
    import os
    import pwd

    kw: dict[str, Any] = {}
    gid: int | None = None
    user_part: Any = user
    group_part: Any = group
    if isinstance(user, str) and ":" in user:
        user_part, _, inline_group = user.partition(":")
        if group is None:
            group_part = inline_group
    if group_part is not None and group_part != "":
        if _is_uint(group_part):
            gid = int(group_part)
        else:
            try:
                gid = grp.getgrnam(str(group_part)).gr_gid
            except KeyError:
                errs.add(f"job[{name}].group '{_show(group_part)}' invalid: no such group in /etc/group")
                return None
    if user_part is None or user_part == "":
        if user is not None:
            errs.add(f"job[{name}].user '{_show(user)}' invalid: must be a user name or uid[:gid]")
            return None
        kw["gid"] = gid
        kw["groups"] = (gid,) if gid is not None else ()
        return kw
    entry = None
    if _is_uint(user_part):
        uid = int(user_part)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            entry = None
    elif isinstance(user_part, str):
        try:
            entry = pwd.getpwnam(user_part)
        except KeyError:
            errs.add(f"job[{name}].user '{user_part}' invalid: no such user in /etc/passwd")
            return None
        uid = entry.pw_uid
    else:
        errs.add(f"job[{name}].user '{_show(user)}' invalid: must be a user name or uid[:gid]")
        return None
    kw["user"] = str(user)
    kw["uid"] = uid
    if entry is not None:
        if gid is None:
            gid = entry.pw_gid
        try:
            kw["groups"] = tuple(dict.fromkeys(os.getgrouplist(entry.pw_name, gid)))
        except OSError:
            kw["groups"] = (gid,)
        kw["env"] = (("HOME", entry.pw_dir or "/"), ("USER", entry.pw_name), ("LOGNAME", entry.pw_name))
    else:
        kw["groups"] = (gid,) if gid is not None else ()
        kw["env"] = (("HOME", "/"), ("USER", None), ("LOGNAME", None))
    kw["gid"] = gid
    return kw


def _umask(raw: Any) -> int | None:
    digits = str(raw) if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(digits, str) or not digits or not all(c in "01234567" for c in digits):
        return None
    val = int(digits, 8)
    return val if val <= 0o777 else None


def _limit(raw: Any) -> int | None:
    """One limit value: a whole number >= 0, or unlimited (-1)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, float) and raw == int(raw):
        raw = int(raw)
    if isinstance(raw, int):
        return raw if raw >= 0 else None
    if isinstance(raw, str):
        s = raw.strip()
        if s.lower() in _UNLIMITED:
            return -1
        if s.isascii() and s.isdigit():
            return int(s)
    return None


def _rlimits(name: str, raw: Any, errs: Collector) -> tuple[tuple[int, int, int], ...]:
    import resource

    if not isinstance(raw, dict):
        errs.add(f"job[{name}].rlimits must be an object such as {{nofile: 1024, core: 0}}")
        return ()
    out: list[tuple[int, int, int]] = []
    for key, value in raw.items():
        res_name = str(key).lower().removeprefix("rlimit_")
        res = getattr(resource, f"RLIMIT_{res_name.upper()}", None) if res_name in _RLIMITS else None
        if res is None:
            errs.add(f"job[{name}].rlimits.{key} invalid: unknown limit (one of {', '.join(_RLIMITS)})")
            continue
        if isinstance(value, str) and ":" in value:
            soft_raw, _, hard_raw = value.partition(":")
            soft, hard = _limit(soft_raw), _limit(hard_raw)
        else:
            soft = hard = _limit(value)
        if soft is None or hard is None:
            errs.add(f"job[{name}].rlimits.{key} '{_show(value)}' invalid: must be a number, \"soft:hard\" "
                     "or \"unlimited\"")
            continue
        if hard != -1 and (soft == -1 or soft > hard):
            errs.add(f"job[{name}].rlimits.{key} '{_show(value)}' invalid: the soft limit is above the "
                     "hard one")
            continue
        out.append((int(res), soft, hard))
    return tuple(out)
