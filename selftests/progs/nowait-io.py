#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""nowait-io.py: one O_DIRECT read or write with RWF_NOWAIT (preadv2/pwritev2).

  nowait-io.py read DEV OFFSET LENGTH OUT    the bytes read go to file OUT
  nowait-io.py write DEV OFFSET LENGTH BYTE  LENGTH bytes of BYTE (0-255)

OFFSET and LENGTH are bytes, multiples of 4096.  Exit 0 when the whole
length was transferred; otherwise 1 and "nowait-io: <errno name>: ..." on
stderr (EOPNOTSUPP: the device's queue does not take REQ_NOWAIT; EAGAIN: it
would have had to wait).  Used by selftests/nowait.sh.
"""
import errno
import mmap
import os
import sys


def main(argv):
    if len(argv) != 6 or argv[1] not in ("read", "write"):
        sys.stderr.write(__doc__)
        return 2
    op, dev, off, length = argv[1], argv[2], int(argv[3]), int(argv[4])
    buf = mmap.mmap(-1, length)  # page aligned, as O_DIRECT wants
    flags = os.O_DIRECT | (os.O_RDONLY if op == "read" else os.O_WRONLY)
    fd = os.open(dev, flags)
    try:
        if op == "read":
            n = os.preadv(fd, [buf], off, os.RWF_NOWAIT)
        else:
            buf.write(bytes([int(argv[5])]) * length)
            n = os.pwritev(fd, [buf], off, os.RWF_NOWAIT)
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        sys.stderr.write(f"nowait-io: {name}: {op} of {length} bytes at {off}: {e.strerror}\n")
        return 1
    finally:
        os.close(fd)
    if n != length:
        sys.stderr.write(f"nowait-io: short {op}: {n} of {length} bytes\n")
        return 1
    if op == "read":
        with open(argv[5], "wb") as out:
            out.write(buf[:n])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
