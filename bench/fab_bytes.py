"""`fab ARGS`, counting the bytes this controller sends over SSH: every packet paramiko
writes to its sockets (encrypted, as on the wire; TCP/IP headers not included), summed over
all connections and written to $RAILSFAB_BYTES_OUT when the command ends.

Every byte railsfab sends a host goes through paramiko (commands, facts, uploads), so this
is the controller's uplink cost of a command. Used by bench/scale_bench.py:
    RAILSFAB_BYTES_OUT=/tmp/n python -m bench.fab_bytes deploy
"""

from __future__ import annotations

import atexit
import os
import threading

import paramiko.packet

_sent = 0
_lock = threading.Lock()
_write_all = paramiko.packet.Packetizer.write_all


def _counting(self, out: bytes) -> None:
    global _sent
    with _lock:
        _sent += len(out)
    return _write_all(self, out)


def _report() -> None:
    path = os.environ.get("RAILSFAB_BYTES_OUT")
    if path:
        with open(path, "w") as f:
            f.write(f"{_sent}\n")


paramiko.packet.Packetizer.write_all = _counting
atexit.register(_report)

if __name__ == "__main__":
    from fabric.main import program

    program.run()
