"""Decoding the job process keys (issue #16): ``user``, ``group``, ``workdir``, ``umask``, ``rlimits``,
``noNewPrivileges``, ``ppidShim``; names resolved at load against this machine's /etc/passwd and /etc/group
(``nobody``/``nogroup`` and root only, which every Debian image has)."""

from __future__ import annotations

import grp
import pwd
import resource

import pytest

from pypilot.config import ConfigError, load, validate_all
from pypilot.config.model import ProcessConfig
from pypilot.config.tini import command_config

from .conftest import ADDRS


def job(write, **keys: object) -> ProcessConfig | None:
    import json

    path = write(json.dumps({"consul": "localhost:8500", "jobs": [{"name": "app", "exec": "true", **keys}]}))
    return load(path, addresses=ADDRS).jobs[0].process


def errors(write, **keys: object) -> list[str]:
    import json

    path = write(json.dumps({"consul": "localhost:8500", "jobs": [{"name": "app", "exec": "true", **keys}]}))
    return validate_all(path, addresses=ADDRS)


def test_a_job_without_the_keys_is_started_as_containerpilot_did(write) -> None:
    assert job(write) is None


def test_user_by_name_gets_its_ids_groups_and_environment(write) -> None:
    nobody = pwd.getpwnam("nobody")
    p = job(write, user="nobody")
    assert p is not None and (p.uid, p.gid) == (nobody.pw_uid, nobody.pw_gid)
    assert p.groups is not None and nobody.pw_gid in p.groups and 0 not in p.groups
    assert dict(p.env) == {"HOME": nobody.pw_dir, "USER": "nobody", "LOGNAME": "nobody"}


def test_uid_and_gid_numbers_and_the_group_key(write) -> None:
    nogroup = grp.getgrnam("nogroup").gr_gid
    p = job(write, user="4242:4343")
    assert p is not None and (p.uid, p.gid, p.groups) == (4242, 4343, (4343,))
    assert dict(p.env) == {"HOME": "/", "USER": None, "LOGNAME": None}  # no passwd entry for 4242
    p = job(write, user=4242)
    assert p is not None and (p.uid, p.gid, p.groups) == (4242, None, ())
    p = job(write, user="nobody", group="nogroup")
    assert p is not None and p.gid == nogroup
    p = job(write, group="nogroup")
    assert p is not None and (p.uid, p.gid, p.groups) == (None, nogroup, (nogroup,))


def test_unknown_user_or_group_is_an_error_naming_the_job_and_the_name(write) -> None:
    assert errors(write, user="no-such-user-x") == [
        "unable to parse jobs: job[app].user 'no-such-user-x' invalid: no such user in /etc/passwd"]
    assert errors(write, user="nobody", group="no-such-group-x") == [
        "unable to parse jobs: job[app].group 'no-such-group-x' invalid: no such group in /etc/group"]
    with pytest.raises(ConfigError, match=r"job\[app\]\.user 'no-such-user-x'"):
        job(write, user="no-such-user-x")


def test_umask_is_octal_as_a_string_or_as_the_digits_of_a_number(write) -> None:
    assert job(write, umask="027").umask == 0o27  # type: ignore[union-attr]
    assert job(write, umask=22).umask == 0o22  # type: ignore[union-attr]
    for bad in ("8", "0o22", "1777", ""):
        assert errors(write, umask=bad) == [
            f"unable to parse jobs: job[app].umask '{bad}' invalid: must be an octal mode such as \"022\""]


def test_rlimits_number_soft_hard_and_unlimited(write) -> None:
    limits = {"nofile": 1024, "core": "0", "nproc": "100:unlimited", "RLIMIT_STACK": "unlimited"}
    p = job(write, rlimits=limits)
    assert p is not None and p.rlimits == (
        (resource.RLIMIT_NOFILE, 1024, 1024), (resource.RLIMIT_CORE, 0, 0), (resource.RLIMIT_NPROC, 100, -1),
        (resource.RLIMIT_STACK, -1, -1))


def test_bad_rlimits_name_the_limit(write) -> None:
    errs = errors(write, rlimits={"nofiles": 1, "core": "5:2", "nproc": -1, "as": "unlimited:10"})
    prefix = "unable to parse jobs: job[app].rlimits."
    assert errs[0].startswith(prefix + "nofiles invalid: unknown limit (one of as, ")
    assert errs[1:] == [
        "unable to parse jobs: job[app].rlimits.core '5:2' invalid: the soft limit is above the hard one",
        "unable to parse jobs: job[app].rlimits.nproc '-1' invalid: must be a number, \"soft:hard\" or "
        "\"unlimited\"",
        prefix + "as 'unlimited:10' invalid: the soft limit is above the hard one"]
    assert errors(write, rlimits=[1]) == [
        "unable to parse jobs: job[app].rlimits must be an object such as {nofile: 1024, core: 0}"]


def test_flags_and_workdir(write) -> None:
    p = job(write, workdir="/srv", noNewPrivileges=True, ppidShim="true")
    assert p is not None and (p.workdir, p.no_new_privileges, p.ppid_shim) == ("/srv", True, True)
    assert (p.uid, p.groups, p.env) == (None, None, ())  # who it runs as is untouched


def test_the_health_check_takes_only_the_identity(write) -> None:
    p = job(write, user="nobody", workdir="/srv", ppidShim=True, rlimits={"core": 0})
    assert p is not None
    ident = p.identity()
    assert (ident.uid, ident.gid, ident.groups, ident.env) == (p.uid, p.gid, p.groups, p.env)
    assert (ident.workdir, ident.ppid_shim, ident.rlimits) == (None, False, ())


def test_tini_mode_config_is_one_main_job_with_the_terminal() -> None:
    cfg = command_config(["/bin/bash", "-l"], {"PYPILOT_SOCKET": "/tmp/x.sock"})
    (j,) = cfg.jobs
    assert (j.name, j.exec, j.main, j.restarts, j.backoff, j.raw_logging, j.interactive) == (
        "bash", ("/bin/bash", "-l"), True, 0, None, True, True)
    assert cfg.consul is None and cfg.control.socket == "/tmp/x.sock"
    assert (cfg.logging.level, cfg.logging.output) == ("WARN", "stderr")
