"""A paced HTTP load on loopback: N keep-alive connections sharing a target rate, bounded in time."""
import http.client
import os
import threading
import time
from collections import Counter


def run(port: int, rate: float, seconds: float, connections: int = 4, path: str = "/load", headers: dict = None,
        during=None) -> Counter:
    """Sends `rate` requests/s for `seconds`; returns a Counter of response statuses (0 = no
    response). `during(elapsed)` is called about every 100 ms from the pacing thread."""
    statuses = Counter()
    lock = threading.Lock()
    deadline = time.time() + seconds
    interval = connections / rate

    def worker(index):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        next_at = time.time() + index * interval / connections
        sent = 0
        while True:
            now = time.time()
            if now >= deadline:
                break
            if now < next_at:
                time.sleep(next_at - now)
            next_at += interval
            status = 0
            # A keep-alive connection the server closed meanwhile (listener drain) is retried once
            # on a fresh one, as HTTP clients do for idempotent requests; any other failure counts.
            for attempt in range(2):
                try:
                    connection.request("GET", f"{path}/{index}/{sent}", headers=headers or {})
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    if attempt == 1:
                        status = 0
                except (OSError, http.client.HTTPException) as error:
                    if os.environ.get("SIDETRACE_LOAD_DEBUG"):
                        print("load error:", repr(error), flush=True)
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    break
            sent += 1
            with lock:
                statuses[status] += 1
        connection.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    start = time.time()
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        if during:
            during(time.time() - start)
        time.sleep(0.1)
    return statuses
