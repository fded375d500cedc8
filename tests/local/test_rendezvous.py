"""The rendezvous of a job trained on several machines (issue 29.6): torchrun's own store listens on every interface
(`*:PORT`) without authentication; node 0 of `ftcli serve --nodes M` listens on the --rendezvous address only."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the local backend needs the `local` extra (scripts/test installs it)")

from ftcli.server.runner import Cluster  # noqa: E402

pytestmark = [pytest.mark.local]


def _listening(port: int) -> set[str]:
    """The addresses a socket listens on at `port`, from Linux's /proc/net/tcp and tcp6."""
    found: set[str] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        for row in table.read_text().splitlines()[1:]:
            columns = row.split()
            address, _, port_hex = columns[1].rpartition(":")
            if columns[3] == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # host byte order words
                found.add(str(ipaddress.ip_address(words if sys.byteorder == "little" else raw)))
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads the listening sockets from /proc/net")
def test_node_0_listens_on_the_named_address_only(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = Cluster(nodes=2, host="127.0.0.1", port=port).torchrun(0, 1, str(tmp_path), "ftjob-none")
    log = tmp_path / "node-0.log"
    with log.open("wb") as output:  # node 1 never comes: node 0 waits in the rendezvous, its store listening
        node_0 = subprocess.Popen(command, stdout=output, stderr=output, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (addresses := _listening(port)):
            assert node_0.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"nothing listens on {port}: {log.read_text()}"
            time.sleep(0.2)
        time.sleep(0.5)  # anything else it would open on the port has had its chance
        assert _listening(port) == {"127.0.0.1"}, addresses  # not 0.0.0.0 or ::
    finally:
        os.killpg(node_0.pid, signal.SIGKILL)
        node_0.wait()
