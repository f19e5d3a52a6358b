import socket

# Ports already handed out in this process. A port is free only until its user binds it, and the
# kernel may offer the same one to the next bind: two listeners of one Envoy were once given the
# same port that way. Never handing out a port twice closes that window for everything started
# from the tests; the ephemeral range is large enough for a whole run.
_HANDED_OUT: set[int] = set()


def free_port() -> int:
    """A loopback TCP port that is free right now and not handed out before by this process."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
