"""Small mesh services on loopback. Like any traced app in a mesh, they copy the trace headers of
the request they serve onto the calls they make (the sidecar cannot do that for them)."""
import hashlib
import json
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# How long the last hop of a `/slow` path takes.
SLOW_SECONDS = 0.6

FORWARDED_HEADERS = (
    "traceparent", "tracestate", "baggage", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-sampled",
    "x-b3-flags", "x-b3-parentspanid", "x-amzn-trace-id", "uber-trace-id", "x-request-id",
)


class App:
    """`App("checkout", calls=[("payments", outbound_port)])`: answers every path; for each
    downstream it calls the sidecar's outbound listener with `Host: <service>`. A path ending in
    `/fail` answers 503 at the last hop, and one ending in `/slow` waits `SLOW_SECONDS` there
    before it answers."""

    def __init__(self, name: str, port: int, calls=(), fail_paths=("/fail",)):
        self.name = name
        self.port = port
        self.calls = list(calls)
        self.fail_paths = fail_paths
        self.seen_headers = []
        self.server = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def headers_for(self, path: str) -> dict:
        """The headers of the last request the app served at `path`."""
        return [headers for seen_path, headers in self.seen_headers if seen_path == path][-1]

    def start(self, bind: str = "127.0.0.1"):
        app = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle on, each keep-alive
            # response waits out the client's delayed ACK (~40 ms).
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                headers = {k.lower(): v for k, v in self.headers.items()}
                app.seen_headers.append((self.path, headers))
                forwarded = {k: v for k, v in headers.items() if k in FORWARDED_HEADERS or k.startswith("uberctx-")}
                downstream = []
                status = 200
                for service, outbound_port in app.calls:
                    code = app.call(service, outbound_port, self.path, forwarded)
                    downstream.append({service: code})
                    if code >= 500:
                        status = 502
                if not app.calls and any(self.path.startswith(p) or self.path.endswith(p) for p in app.fail_paths):
                    status = 503
                if not app.calls and self.path.endswith("/slow"):
                    time.sleep(SLOW_SECONDS)
                body = json.dumps({"service": app.name, "path": self.path, "downstream": downstream}).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                payload = self.rfile.read(int(self.headers.get("content-length", "0")))
                app.seen_headers.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                body = json.dumps({"service": app.name, "received": len(payload),
                                   "sha256": hashlib.sha256(payload).hexdigest()}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((bind, self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def fetch(port: int, path: str, headers: dict) -> tuple:
        """(status, the lowercase names of the response's headers) of a GET to 127.0.0.1:`port`."""
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                return response.status, {name.lower() for name in response.headers}
        except urllib.error.HTTPError as error:
            return error.code, {name.lower() for name in error.headers}

    @staticmethod
    def call(service: str, outbound_port: int, path: str, headers: dict) -> int:
        try:
            return App.fetch(outbound_port, path, {**headers, "host": service})[0]
        except OSError:
            return 599

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def main():
    """`python -m harness.apps --name checkout --port 8080 --call payments=15001`: one demo service
    (the docker-compose stack runs its apps this way)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--call", action="append", default=[], help="service=outbound_port")
    args = parser.parse_args()
    calls = [(spec.split("=")[0], int(spec.split("=")[1])) for spec in args.call]
    app = App(args.name, args.port, calls=calls)
    app.start(bind="0.0.0.0")
    print(f"{args.name} listening on :{args.port}, calling {calls}", flush=True)
    signal.sigwait({signal.SIGINT, signal.SIGTERM})
    app.stop()


if __name__ == "__main__":
    main()
