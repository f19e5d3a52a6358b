"""A paced HTTP load on loopback: N keep-alive connections sharing a target rate, bounded in time."""
import http.client
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
            try:
                connection.request("GET", f"{path}/{index}/{sent}", headers=headers or {})
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
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
