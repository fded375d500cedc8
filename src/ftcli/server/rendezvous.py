"""Node 0 of a job trained on several machines (`ftcli serve --nodes M --rendezvous HOST:PORT`): torchrun, with its
rendezvous store listening on HOST's address only.

torchrun's static rendezvous starts a TCPStore server on node 0 that listens on every interface (`*:PORT`) and asks
nobody for a key: whoever reaches it can set and read keys, join the job, see and poison its gradients. ftcli can't
add authentication to torch's protocol, so `serve` asks for an explicit opt-in, and here the store gets a socket
bound to the named address (TCPStore's `master_listen_fd`), so at least the other interfaces (a public one, a VPN)
don't expose it. Run as `python -m ftcli.server.rendezvous <torchrun's arguments>` (see runner.Cluster).
"""

from __future__ import annotations

import socket
import sys
from typing import Any


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket listening on `host`'s address (a name: its first address) and `port`."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    listener = socket.socket(family, kind, proto)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
        listener.listen()
    except OSError:
        listener.close()
        raise
    return listener


def main(argv: list[str]) -> None:
    from torch.distributed.elastic.rendezvous import static_tcp_rendezvous
    from torch.distributed.run import main as torchrun
    from torch.distributed.run import parse_args

    args = parse_args(argv)  # type: ignore[no-untyped-call]
    listener = listen(args.master_addr, int(args.master_port))
    tcp_store = static_tcp_rendezvous.TCPStore  # type: ignore[attr-defined]

    def bound_store(host: str, port: int, *positional: Any, **options: Any) -> Any:
        is_master = positional[1] if len(positional) > 1 else options.get("is_master", False)
        if is_master and port == listener.getsockname()[1]:
            options["master_listen_fd"] = listener.detach()  # the store owns the socket from here
        return tcp_store(host, port, *positional, **options)

    # The static rendezvous makes its store through this name. Should a torch version make it elsewhere, its own
    # server can't bind *:PORT while this socket holds HOST:PORT: the launch fails, it never listens everywhere.
    static_tcp_rendezvous.TCPStore = bound_store  # type: ignore[attr-defined,assignment]
    torchrun(argv)


if __name__ == "__main__":
    main(sys.argv[1:])
