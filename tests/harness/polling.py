"""Waiting for what Envoy, the filter or the receiver report a moment later: counters published
on the filter's tick, spans exported in batches, access logs flushed about once a second."""
import time


def poll(read, done, timeout: float, interval: float = 0.05):
    """`read()` once `done` holds for it, or as it is when `timeout` runs out."""
    deadline = time.time() + timeout
    while True:
        value = read()
        if done(value) or time.time() > deadline:
            return value
        time.sleep(interval)


def steady(read, interval: float = 1.1):
    """`read()` once two reads `interval` apart agree: by default more than a tick of the filter's
    (once a second with nothing to export), so whatever an earlier request left has landed."""
    previous = read()
    while True:
        time.sleep(interval)
        current = read()
        if current == previous:
            return current
        previous = current
