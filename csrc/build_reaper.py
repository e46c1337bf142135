"""cffi out-of-line API build of ``pypilot._reaper`` from reaper.c (run by setup.py's cffi_modules)."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
header = (HERE / "reaper.h").read_text()
ffibuilder.cdef(header.split("#define PYPILOT_REAPER_H", 1)[1].rsplit("#endif", 1)[0])
ffibuilder.set_source(
    "pypilot._reaper",
    '#include "reaper.h"',
    sources=[str(Path("csrc") / "reaper.c")],
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
