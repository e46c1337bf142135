#!/usr/bin/env python3
"""Make pypilot's self-contained build: one directory that needs nothing from the image it is copied into.

    <venv>/bin/python scripts/bundle.py --prefix /opt/pypilot

Run it with the Python of an environment where pypilot is installed (a venv after ``pip install .``). It
copies into PREFIX, which must not exist yet or be empty:

- ``bin/pypilot-python``: that Python's own interpreter binary, its ELF interpreter set to the bundle's
  ``lib/ld-linux-x86-64.so.2`` and its DT_RPATH to ``$ORIGIN/../lib`` (patchelf), with
  ``bin/pypilot-python._pth`` next to it: Python reads that file instead of computing sys.path and, because
  it is there, runs isolated (no ``PYTHON*`` variables, no site, no user site, no cwd on sys.path). Named
  ``pypilot-python``, not ``python3``, so that even a PATH with ``/opt/pypilot/bin`` on it leaves the jobs'
  ``python3`` the image's.
- ``bin/pypilot``: the entry point, a script whose shebang the kernel runs (so it works in an image with no
  shell and no libc).
- ``lib/``: the loader, glibc and every shared library that the interpreter or any bundled extension module
  needs (found with ``ldd``, generically: every ``.so`` in the tree is walked, so a new dependency with a C
  extension is picked up without a change here), plus ``libgcc_s`` which glibc itself dlopens.
- ``lib/python3.X/``: the standard library less what a supervisor never imports (tests, tkinter, idlelib,
  ensurepip, lib2to3, ...), as bytecode only; ``lib-dynload`` without the modules that need libraries we do
  not carry (curses, readline, dbm, sqlite, tkinter).
- ``lib/python3.X/site-packages``: pypilot and its runtime dependencies only (walked from pypilot's
  ``Requires-Dist``, extras and environment markers evaluated), pypilot's own sources kept for tracebacks.

Every bundled ELF object gets a DT_RPATH (searched before ``LD_LIBRARY_PATH``) that reaches ``lib/`` from its
own directory, so an image's ``LD_LIBRARY_PATH`` or ``ld.so.cache`` cannot swap a library under it. Nothing
is put in the environment: the jobs inherit none of this.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.metadata as md
import os
import py_compile
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

VER = f"python{sys.version_info.major}.{sys.version_info.minor}"
# Standard-library entries that neither pypilot nor its dependencies import at run time (checked with
# ``-X importtime`` of a full-featured run: jobs, health checks, Consul, telemetry, control worker, reload;
# and by grep of the bundled site-packages for function-level imports): tests, GUIs, REPL/debugging/profiling,
# packaging, mail/news/FTP clients, databases, audio, the pure-Python fallbacks of C modules.
STDLIB_DROP = {
    "site-packages", "dist-packages", "test", "tests", "idle_test", "tkinter", "idlelib", "ensurepip",
    "lib2to3", "pydoc_data", "turtledemo", "turtle.py", "__phello__", "__hello__.py", "venv", "distutils",
    "sqlite3", "curses", "dbm", "unittest", "ctypes", "xmlrpc", "msilib", "pydoc.py", "doctest.py", "pdb.py",
    "bdb.py", "cProfile.py", "profile.py", "pstats.py", "trace.py", "tracemalloc.py", "code.py",
    "codeop.py", "cmd.py", "rlcompleter.py", "pty.py", "tty.py", "tarfile.py", "mailbox.py", "mailcap.py",
    "ftplib.py", "imaplib.py", "poplib.py", "smtplib.py", "smtpd.py", "nntplib.py", "telnetlib.py",
    "cgi.py", "cgitb.py", "webbrowser.py", "plistlib.py", "aifc.py", "sunau.py", "wave.py", "chunk.py",
    "sndhdr.py", "imghdr.py", "audioop.py", "pickletools.py", "symtable.py", "tabnanny.py", "pyclbr.py",
    "modulefinder.py", "zipapp.py", "uu.py", "xdrlib.py", "crypt.py", "getpass.py", "_pydecimal.py",
    "_pyio.py", "_pydatetime.py", "_pylong.py", "_osx_support.py", "_aix_support.py", "_bootsubprocess.py",
    "antigravity.py", "this.py", "colorsys.py", "sched.py", "filecmp.py", "fileinput.py", "nturl2path.py",
    "LICENSE.txt", "EXTERNALLY-MANAGED", "README.txt",
}  # fmt: skip
STDLIB_DROP_DIRS = {"xml/dom", "xml/sax", "email/mime", "multiprocessing/dummy"}
STDLIB_DROP_RE = re.compile(r"^(config-\d|_sysconfigdata_.*_(d|dbg)\b)")
# lib-dynload modules that need a library we do not carry, exist only to test CPython, or belong to a
# dropped package (ctypes); and the CJK codecs (a supervisor decodes its jobs' output as UTF-8)
DYNLOAD_DROP_RE = re.compile(
    r"^(_tkinter|_curses|_curses_panel|readline|_dbm|_gdbm|_sqlite3|_test\w*|xx\w*|_xx\w*|_ctypes\w*|"
    r"audioop|nis|ossaudiodev|spwd|_crypt|_codecs_\w+|_multibytecodec)\."
)
CJK_ENCODINGS_RE = re.compile(
    r"^(big5|big5hkscs|cp932|cp949|cp950|euc_\w+|gb2312|gbk|gb18030|hz|iso2022_\w+|johab|shift_\w+)\.py$"
)
# distributions needed only to build pypilot's C module: cffi's out-of-line API mode needs only the
# `_cffi_backend` extension at run time, not the cffi package (its C-declaration parser) nor pycparser
BUILD_ONLY = {"pycparser": None, "cffi": re.compile(r"^_cffi_backend\.[^/]*\.so$|\.dist-info/")}
# py-consul requires requests, but pypilot's transport replaces the module that imports it
# (pypilot/consul_http.py): nothing in the bundle imports requests or what only it pulls in (about 2 MB)
UNUSED = ("requests", "urllib3", "idna", "charset-normalizer", "certifi")
# glibc's own objects: their dependencies are each other, already loaded by soname; no rpath needed
GLIBC_RE = re.compile(r"^(ld-linux.*|libc|libm|libpthread|libdl|librt|libresolv|libutil|libanl|libnss_\w+)\.")
# libraries glibc dlopens at run time (thread cancellation and unwinding), not seen by ldd
DLOPENED = ("libgcc_s.so.1",)
# what the bundled interpreter must import once built: every pypilot module (so every stdlib module they or
# their dependencies import at module level is there) and each extension module
SMOKE = (
    "import importlib, pkgutil, pypilot, sys, pathlib\n"
    "for m in pkgutil.walk_packages(pypilot.__path__, 'pypilot.'): importlib.import_module(m.name)\n"
    # py-consul as pypilot loads it (on its own transport: no requests in the bundle)
    "from pypilot.consul import make_client; make_client({})\n"
    "import falcon, waitress, consul, prometheus_client, ssl, hashlib\n"
    "site = pathlib.Path(sys.path[-1])\n"
    # every extension module of every dependency loads: its libraries are found
    "for so in site.rglob('*.so'):\n"
    "    importlib.import_module('.'.join(so.relative_to(site).with_name(so.name.split('.')[0]).parts))\n"
    "print('ok')\n"
)
LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(\S+)\s+\(0x")
ENTRY = """#!{python}
# pypilot's entry point. The kernel runs the shebang (no shell needed); the interpreter's ._pth file gives it
# its whole sys.path, so nothing of PYTHONPATH/PYTHONHOME or the image's Python is used.
import sys

from pypilot.__main__ import main

sys.exit(main())
"""


def log(msg: str) -> None:
    print(f"[bundle] {msg}", file=sys.stderr, flush=True)


def run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def base_executable() -> Path:
    """The real interpreter binary behind this (possibly venv) Python."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return Path(os.path.realpath(exe))


def elf_interpreter(exe: Path) -> Path:
    return Path(os.path.realpath(run("patchelf", "--print-interpreter", str(exe)).strip()))


def ldd(path: Path) -> dict[str, Path]:
    """soname -> resolved path of every library ``path`` needs, transitively (the build system's view)."""
    out = subprocess.run(["ldd", str(path)], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        m = LDD_LINE.match(line)
        if m and m.group(2).startswith("/"):
            found[m.group(1)] = Path(m.group(2))
        elif "not found" in line:
            raise SystemExit(f"bundle: {path} needs {line.split()[0]}, which is not found")
    return found


# --- site-packages: pypilot and what it requires ------------------------------------------------------


def _requirement_names(dist: md.Distribution, extras: Iterable[str] = ()) -> Iterator[str]:
    from packaging.requirements import Requirement  # present wherever pip is (pip vendors it) or installed

    for spec in dist.requires or ():
        req = Requirement(spec)
        if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in (*extras, "")):
            yield req.name


def runtime_dists(root: str) -> list[md.Distribution]:
    """``root`` and every distribution it requires at run time, each once."""
    seen: dict[str, md.Distribution] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise SystemExit(f"bundle: {name} (needed by {root}) is not installed in {sys.prefix}") from None
        seen[key] = dist
        todo.extend(_requirement_names(dist))
    return list(seen.values())


def _packaging_available() -> None:
    try:
        import packaging.requirements  # noqa: F401
    except ImportError:
        try:
            import pip._vendor.packaging.requirements as req  # type: ignore[import-not-found]

            sys.modules["packaging"] = sys.modules["pip._vendor.packaging"]
            sys.modules["packaging.requirements"] = req
        except ImportError:
            raise SystemExit("bundle: needs `packaging` (or pip) in the Python that runs it") from None


def copy_site_packages(dest: Path) -> list[str]:
    _packaging_available()
    dists = runtime_dists("pypilot")
    names = []
    for dist in dists:
        base = Path(str(dist.locate_file("")))
        key = re.sub(r"[-_.]+", "-", dist.metadata["Name"]).lower()
        if key in UNUSED or (key in BUILD_ONLY and BUILD_ONLY[key] is None):
            continue
        only = BUILD_ONLY.get(key)
        for rel in dist.files or ():
            if only is not None and not only.search(str(rel)):
                continue
            src = Path(str(dist.locate_file(rel)))
            parts = Path(rel).parts
            if parts[0] == ".." or "__pycache__" in parts or not src.is_file():
                continue  # console scripts (outside site-packages), stale bytecode
            out = dest / src.relative_to(base)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out)
        names.append(f"{dist.metadata['Name']} {dist.version}")
    if not (dest / "pypilot" / "__init__.py").exists():  # an editable install (a checkout's dev venv)
        import importlib.util

        spec = importlib.util.find_spec("pypilot")
        assert spec and spec.submodule_search_locations, "pypilot is not importable"
        src = Path(next(iter(spec.submodule_search_locations)))
        shutil.copytree(src, dest / "pypilot", ignore=shutil.ignore_patterns("__pycache__", "*.c", "*.o"))
    return sorted(names, key=str.lower)


# --- the standard library ---------------------------------------------------------------------------


def copy_stdlib(src: Path, dest: Path) -> None:
    def ignore(directory: str, entries: list[str]) -> set[str]:
        here = Path(directory).relative_to(src).as_posix()
        drop = {e for e in entries if e in STDLIB_DROP or e == "__pycache__" or STDLIB_DROP_RE.match(e)}
        drop |= {e for e in entries if f"{here}/{e}".removeprefix("./") in STDLIB_DROP_DIRS}
        if here == "lib-dynload":
            drop |= {e for e in entries if DYNLOAD_DROP_RE.match(e)}
        if here == "encodings":
            drop |= {e for e in entries if CJK_ENCODINGS_RE.match(e)}
        return drop

    shutil.copytree(src, dest, ignore=ignore, symlinks=False)
    dynload = Path(sysconfig.get_path("platstdlib")) / "lib-dynload"
    if not (dest / "lib-dynload").exists() and dynload.is_dir():  # a layout with it elsewhere
        shutil.copytree(dynload, dest / "lib-dynload", ignore=ignore)


def compile_sourceless(pylib: Path, site: Path, keep_sources: Iterable[Path] = ()) -> None:
    """Byte-compile the bundle; outside ``keep_sources``, the .pyc replaces the .py (sourceless import).

    The standard library is compiled as ``-OO`` would (no docstrings, no asserts: about a fifth smaller;
    CPython is tested in that mode), whatever flags the interpreter runs with, since a sourceless .pyc is
    loaded as it is; third-party code and pypilot keep docstrings and asserts (some read their ``__doc__``).
    """
    keep = [p.resolve() for p in keep_sources]
    skip_site = re.compile(re.escape(str(site)))
    ok = compileall.compile_dir(str(pylib), quiet=1, workers=0, rx=skip_site, optimize=2, legacy=False)
    # unchecked-hash: the bytecode of the sources kept is used as it is, whatever mtimes a COPY gives them
    # (the tree is immutable; a stale-looking .pyc would be recompiled in memory at every start)
    unchecked = py_compile.PycInvalidationMode.UNCHECKED_HASH
    ok = compileall.compile_dir(
        str(site), quiet=1, workers=0, optimize=0, legacy=False, invalidation_mode=unchecked
    ) and ok
    if not ok:
        raise SystemExit("bundle: byte-compiling the bundle failed")
    tag = sys.implementation.cache_tag
    for pyc in pylib.rglob(f"__pycache__/*.{tag}*.pyc"):
        source = pyc.parent.parent / (pyc.name.split(".")[0] + ".py")
        if any(source.resolve().is_relative_to(k) for k in keep):
            continue
        pyc.replace(source.with_suffix(".pyc"))
        source.unlink(missing_ok=True)
    # a module compiled to an extension (mypyc, Cython) is imported from its .so, found before the .py or
    # .pyc in the same directory: the bytecode copy is never loaded
    import importlib.machinery

    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for ext in pylib.rglob(f"*{suffix}"):
            stem = ext.name[: -len(suffix)]
            (ext.parent / f"{stem}.pyc").unlink(missing_ok=True)
    for cache in sorted(pylib.rglob("__pycache__"), reverse=True):
        if not any(cache.iterdir()):
            cache.rmdir()


# --- shared libraries -------------------------------------------------------------------------------


def strip(path: Path) -> None:
    if shutil.which("strip"):
        subprocess.run(["strip", "--strip-unneeded", str(path)], capture_output=True)


def relative_rpath(obj: Path, libdir: Path) -> str:
    return "$ORIGIN/" + os.path.relpath(libdir, obj.parent) if obj.parent != libdir else "$ORIGIN"


def bundle_libraries(prefix: Path, exe: Path, objects: list[Path], source_tree: list[Path]) -> None:
    """Copy every library the objects need into prefix/lib; give each object an rpath reaching it."""
    libdir = prefix / "lib"
    needed: dict[str, Path] = {}
    for obj in [exe, *objects]:
        for soname, path in ldd(obj).items():
            # a wheel's vendored library (cffi.libs/...) is copied with its distribution
            if not any(path.resolve().is_relative_to(s) for s in source_tree):
                needed.setdefault(soname, path)
    libc_dir = next((p.parent for n, p in needed.items() if n.startswith("libc.so")), None)
    for extra in DLOPENED:
        if libc_dir and (libc_dir / extra).exists():
            needed.setdefault(extra, libc_dir / extra)
    loader = elf_interpreter(exe)
    for soname, path in sorted(needed.items()):
        out = libdir / soname
        if not out.exists():
            shutil.copy2(os.path.realpath(path), out)
            os.chmod(out, 0o755)
    ld = libdir / loader.name
    if not ld.exists():
        shutil.copy2(loader, ld)
    for lib in libdir.iterdir():
        if lib.is_file() and is_elf(lib):
            strip(lib)
            if not GLIBC_RE.match(lib.name):
                subprocess.run(["patchelf", "--force-rpath", "--set-rpath", "$ORIGIN", str(lib)], check=True)
    for obj in objects:
        strip(obj)
        old = run("patchelf", "--print-rpath", str(obj)).strip()
        keep = [p for p in old.split(":") if p.startswith("$ORIGIN")]  # a wheel's own .libs directory
        rpath = ":".join(dict.fromkeys([*keep, relative_rpath(obj, libdir)]))
        subprocess.run(["patchelf", "--force-rpath", "--set-rpath", rpath, str(obj)], check=True)
    strip(exe)
    rpath = ["--force-rpath", "--set-rpath", "$ORIGIN/../lib"]
    subprocess.run(["patchelf", "--set-interpreter", str(ld), *rpath, str(exe)], check=True)


def du(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prefix", default="/opt/pypilot", help="where the bundle lives (default /opt/pypilot)")
    args = ap.parse_args(argv)
    prefix = Path(args.prefix).absolute()
    if prefix.exists() and any(prefix.iterdir()):
        raise SystemExit(f"bundle: {prefix} exists and is not empty")
    for tool in ("patchelf", "ldd"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bundle: needs {tool}")
    exe = base_executable()
    stdlib = Path(sysconfig.get_path("stdlib"))
    pylib = prefix / "lib" / VER
    site = pylib / "site-packages"
    (prefix / "bin").mkdir(parents=True, exist_ok=True)
    log(f"interpreter {exe}, standard library {stdlib}")
    copy_stdlib(stdlib, pylib)
    site.mkdir()
    dists = copy_site_packages(site)
    log(f"site-packages: {', '.join(dists)}")

    python = prefix / "bin" / "pypilot-python"
    shutil.copy2(exe, python)
    os.chmod(python, 0o755)
    # relative to this file's own directory: the bundle's sys.path, nothing else
    pth = [os.path.relpath(p, python.parent) for p in (pylib, pylib / "lib-dynload", site)]
    (prefix / "bin" / "pypilot-python._pth").write_text("\n".join(pth) + "\n")

    source_tree = [prefix, stdlib.resolve(), *(Path(p).resolve() for p in sys.path if p and Path(p).is_dir())]
    objects = [p for p in pylib.rglob("*.so*") if p.is_file() and is_elf(p)]
    bundle_libraries(prefix, python, objects, source_tree)

    compile_sourceless(pylib, site, keep_sources=[site / "pypilot"])
    entry = prefix / "bin" / "pypilot"
    entry.write_text(ENTRY.format(python=python))
    entry.chmod(entry.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)

    check = subprocess.run(
        [str(python), "-c", SMOKE],
        capture_output=True,
        text=True,
        cwd="/",
    )
    if check.stdout.strip() != "ok":
        raise SystemExit(f"bundle: the bundled interpreter does not run:\n{check.stderr}")
    log(f"{prefix}: {du(prefix) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
