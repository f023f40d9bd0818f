"""A free TCP port on 127.0.0.1, for a rendezvous, a process group or a server a test starts."""
import socket


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
