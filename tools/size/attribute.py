#!/usr/bin/env python3
"""Where the text of the Rust core goes, by symbol and by source module.

    tools/size/attribute.py CORE.o [N]

CORE.o is the object build-core.sh makes (mqtt_core.o, any target). It is
linked alone with --gc-sections from the exported mqtt_rs_* functions (what
the firmware link keeps of it; MicroPython's symbols stay undefined), then
sized; the N biggest symbols (default 40) and the totals per module are
printed. The binutils of the object's architecture are used (arm-none-eabi-*
for a Cortex-M object).
"""
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path


def tools(obj):
    head = Path(obj).read_bytes()[:20]
    if head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 0x28:
        return "arm-none-eabi-"
    return ""


def run(*args):
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def group(name):
    m = re.search(r"dl7450_mqtt::(\w+)::(\w+)", name)
    if name.startswith("mqtt_rs_"):
        return "binding (exported mqtt_rs_*)"
    if m and not name.startswith("<core") and not name.startswith("core"):
        return "%s::%s" % (m.group(1), m.group(2))
    if "compiler_builtins" in name:
        return "compiler_builtins"
    if name.startswith("core::") or name.startswith("<core"):
        return "core (Rust library)"
    return "other (constants, switch tables)"


def gc_linked(obj):
    """(text, data, bss, weak_bytes, symbols) of `obj` linked alone with --gc-sections."""
    pre = tools(obj)
    with tempfile.TemporaryDirectory() as d:
        clean = "%s/core.o" % d
        # the embedded LLVM bitcode is not code, and confuses nm
        run(pre + "objcopy", "--remove-section=.llvmbc", "--remove-section=.llvmcmd", obj, clean)
        roots = [l.split()[-1] for l in run(pre + "nm", "-g", "--defined-only", clean).splitlines()
                 if l.split()[-1].startswith("mqtt_rs_")]
        args = [pre + "ld", "--gc-sections", "--unresolved-symbols=ignore-all", "-e", "0", "-o", "%s/core.elf" % d]
        for r in roots:
            args += ["-u", r]
        run(*(args + [clean]))
        size = [int(x) for x in run(pre + "size", "%s/core.elf" % d).splitlines()[-1].split()[:3]]
        syms = []
        weak = []
        for line in run(pre + "nm", "--size-sort", "-S", "-C", "%s/core.elf" % d).splitlines():
            p = line.split(None, 3)
            if len(p) == 4:
                # weak and global: the firmware's own definition replaces it
                (weak if p[2] == "W" else syms).append((int(p[1], 16), p[3]))
    w = sum(x[0] for x in weak)
    syms.sort(reverse=True)
    return size[0] - w, size[1], size[2], weak, syms, len(roots)


def main():
    obj = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 40
    text, data, bss, weak, syms, nroots = gc_linked(obj)
    print("text %d, data %d, bss %d (linked with --gc-sections from %d mqtt_rs_* roots; "
          "without %d bytes of weak %s the firmware's libc replaces)"
          % (text, data, bss, nroots, sum(x[0] for x in weak), ", ".join(x[1] for x in weak) or "-"))
    per = defaultdict(int)
    for s, name in syms:
        per[group(name)] += s
    print("\nby module:")
    for g, s in sorted(per.items(), key=lambda x: -x[1]):
        print("  %6d  %s" % (s, g))
    print("\nbiggest symbols:")
    for s, name in syms[:n]:
        print("  %6d  %s" % (s, name[:140]))


if __name__ == "__main__":
    main()
