"""The bundled demo gateway: a stdlib HTTP server on 127.0.0.1 with ``/health``.

``/health`` answers ``{"status": "ok", "pid": ..., "uptime": ..., "version": ...}``. Run it with
``python -m daemonkit.demo_gateway --port N``. A port already in use exits 78 (configuration error),
so the supervisor does not hammer it with restarts.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STARTED = time.monotonic()
EXIT_CONFIG_ERROR = 78


class Handler(BaseHTTPRequestHandler):
    server_version = "daemonkit-demo"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.rstrip("/") in ("/health", ""):
            body = json.dumps({
                "status": "ok", "pid": os.getpid(), "uptime": round(time.monotonic() - STARTED, 3),
                "version": os.environ.get("DEMO_VERSION", "1"),
            }).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404, "try /health")

    def log_message(self, fmt: str, *args: object) -> None:
        sys.stdout.write("%s %s\n" % (time.strftime("%H:%M:%S"), fmt % args))
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        server = ThreadingHTTPServer((args.host, args.port), Handler)
    except OSError as exc:
        print(f"demo gateway: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}; "
              "choose another port (daemonkit demo --port N)", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"demo gateway listening on http://{args.host}:{args.port}/health (pid {os.getpid()})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("demo gateway: stopping", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
