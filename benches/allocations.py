"""Allocations in a callgrind dump: the calls into the allocator's entry points (mimalloc's, as
runtime/allocator.rs makes them, and libc's, which SQLite uses), by calling function. perf puts
the allocator's share of ferrolite's time at three times its share of instructions (the cache
miss of each block it hands out), so a request's allocations are a figure of their own
(`benches/callgrind.sh` prints it beside the instructions)."""

import collections
import re

# The entry points: a call between two of them (mi_malloc into its generic path) is the same
# allocation.
ENTRIES = frozenset(
    ["mi_malloc", "mi_malloc_aligned", "mi_zalloc", "mi_zalloc_aligned", "mi_realloc", "mi_realloc_aligned",
     "malloc", "calloc", "realloc"]
)
_NAMED = re.compile(r"\((\d+)\)(?: (.*))?")


def count(dump):
    """Calls into the allocator in `dump`, by the calling function's name."""
    names = {}

    def name(text):
        m = _NAMED.match(text)
        if not m:
            return text
        if m.group(2) is not None:
            names[m.group(1)] = m.group(2)
        return names.get(m.group(1), text)

    fn = callee = None
    by_function = collections.Counter()
    with open(dump, errors="replace") as lines:
        for line in lines:
            if line.startswith("fn="):
                fn = name(line[3:].rstrip("\n"))
            elif line.startswith("cfn="):
                callee = name(line[4:].rstrip("\n"))
            elif line.startswith("calls=") and callee in ENTRIES and fn not in ENTRIES:
                by_function[fn] += int(line[6:].split()[0])
    return by_function
