"""Running the demo: its command line, and uvicorn on a socket bound first (a busy port is one clear line)."""

import argparse
import errno
import socket
import sys
from collections.abc import Sequence
from typing import Optional

from authx_epoch.demo.api import create_app
from authx_epoch.errors import ConfigurationError
from authx_epoch.integrations.authx import DEFAULT_STORE


def listen(host: str, port: int) -> socket.socket:
    """Return a socket bound to ``host:port``, for uvicorn (``port`` 0: a free port).

    Raises:
        ConfigurationError: The port is taken (the message says how to pick another) or cannot be listened on.
    """
    # Bind here, so a busy port is one line saying what to do instead of uvicorn's log; the socket
    # is then handed to uvicorn, so nothing can take the port in between.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does; a listener still wins
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            other = port + 1 if 0 < port < 65535 else 8001
            raise ConfigurationError(
                f"port {port} on {host} is already in use (is another demo still running?); "
                f"pick another with --port, for example --port {other}"
            ) from exc
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def serve(*, host: str = "127.0.0.1", port: int = 8000, store: str = DEFAULT_STORE) -> None:
    """Run the demo with uvicorn until interrupted.

    Raises:
        SystemExit: uvicorn is missing (install the ``demo`` extra).
        ConfigurationError: the store URL is unusable, or the port is taken (the message says how
            to pick another) or cannot be listened on.
    """
    try:
        import uvicorn
    except ImportError as exc:
        raise SystemExit("the demo needs uvicorn: pip install 'authx-epoch[demo]'") from exc
    app = create_app(store)
    sock = listen(host, port)
    print(f"authx-epoch demo: store {store}, Swagger UI at http://{host}:{port}/docs", file=sys.stderr)
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info")).run(sockets=[sock])


def main(argv: Optional[Sequence[str]] = None, *, prog: str = "python -m authx_epoch.demo") -> None:
    """Parse the command line and run the demo (``scripts/demo`` passes its own name as ``prog``)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run the authx-epoch demo app: log in as alice / wonderland or bob / builder, "
        "then follow the README's curl walk-through (it can be run again and again against one "
        "demo) or click through Swagger UI at /docs.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: %(default)s)")
    parser.add_argument("--store", default=DEFAULT_STORE, help="revocation store URL (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        serve(host=args.host, port=args.port, store=args.store)
    except ConfigurationError as exc:
        parser.exit(2, f"{prog}: {exc}\n")
