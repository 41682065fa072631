"""Ids (server/core/domain.py new_id): drawn from the OS's randomness in blocks, so
they must stay unique within a process, across block refills, and between a
process and the workers it forks."""

from __future__ import annotations

import re
import subprocess
import sys

from server.core import domain

ID = re.compile(r"^h_[A-Za-z0-9xy]{12}$")


def test_ids_are_well_formed_and_unique_across_block_refills() -> None:
    ids = [domain.new_id("h") for _ in range(5 * domain._ID_BLOCK // domain._ID_BYTES + 3)]
    assert all(ID.match(i) for i in ids)
    assert len(set(ids)) == len(ids)


# Run in a process of its own: forking the test runner, which may have threads,
# is deprecated (and an error under this suite's warning filter).
FORKED = """
import os, sys
from server.core import domain
domain.new_id("h")  # the parent holds a block with ids still to hand out
read, write = os.pipe()
pid = os.fork()
if pid == 0:
    os.write(write, " ".join(domain.new_id("h") for _ in range(8)).encode())
    os._exit(0)
os.close(write)
with os.fdopen(read) as pipe:
    child = pipe.read()
os.waitpid(pid, 0)
print(child)
print(" ".join(domain.new_id("h") for _ in range(8)))
"""


def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    out = subprocess.run([sys.executable, "-c", FORKED], capture_output=True, text=True,
                         timeout=60, check=True).stdout.splitlines()
    child, parent = out[0].split(), out[1].split()
    assert len(child) == len(parent) == 8 and all(ID.match(i) for i in child + parent)
    assert not set(child) & set(parent)
