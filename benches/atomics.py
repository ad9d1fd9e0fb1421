"""Atomic operations in a callgrind dump made with --dump-instr=yes: every executed instruction
with a `lock` prefix, or an `xchg` with memory (locked without one), found by its address in the
objects' disassembly. callgrind counts such an instruction as one, where the processor pays
tens of cycles for it, and more when another core wrote its cache line last; this is the
figure instruction counts cannot show (`benches/callgrind.sh` with ATOMICS=1)."""

import collections
import os
import re
import subprocess

_LOCKED = re.compile(r"^\s*([0-9a-f]+):\s+(?:lock |xchg\s+\S*\()")
_NAMED = re.compile(r"(c?ob|c?fn|c?fl|fi|fe)=\((\d+)\)(?: (.*))?")


def locked_addresses(path):
    """Addresses of the locked instructions in the object at `path`."""
    text = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", path], check=True, capture_output=True, text=True
    ).stdout
    found = set()
    for line in text.splitlines():
        m = _LOCKED.match(line)
        if m:
            found.add(int(m.group(1), 16))
    return found


def _position(token, previous):
    if token == "*":
        return previous
    if token[0] == "+":
        return previous + int(token[1:], 0)
    if token[0] == "-":
        return previous - int(token[1:], 0)
    return int(token, 0)


def count(dump, objects):
    """Atomic operations executed in `dump`, by function: `objects` maps an object's real path
    to its locked addresses. Call lines' inclusive costs are skipped."""
    names = {"ob": {}, "fn": {}}
    ob = fn = None
    address = 0
    after_call = False
    by_function = collections.Counter()
    with open(dump) as lines:
        for line in lines:
            line = line.rstrip("\n")
            if not line:
                continue
            named = _NAMED.match(line)
            if named:
                key, index, name = named.groups()
                kind = key.lstrip("c")
                if kind in names:
                    if name:
                        # An object is kept as its locked addresses (None: one not counted).
                        names[kind][index] = objects.get(os.path.realpath(name)) if kind == "ob" else name
                    if key == "ob":
                        ob = names["ob"].get(index)
                    elif key == "fn":
                        fn = names["fn"].get(index)
                continue
            if line.startswith("calls="):
                after_call = True
                continue
            if line[0] not in "0123456789+-*":
                continue
            parts = line.split()
            address = _position(parts[0], address)
            if after_call:
                after_call = False
                continue
            if ob and address in ob and len(parts) >= 3:
                by_function[fn] += int(parts[-1])
    return by_function
