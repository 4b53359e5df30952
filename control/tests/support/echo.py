#!/usr/bin/env python3
"""Echo over TCP and UDP, for the tests' backends and clients.

    echo.py serve PORT ADDRESS...   echoes on PORT of each ADDRESS, TCP (each connection
                                    until it closes) and UDP, each socket bound to its
                                    address, so that a reply leaves from the address the
                                    request came to (a VIP); prints "ready" once every
                                    socket listens.
    echo.py ask PORT ADDRESS...     one TCP exchange and one UDP exchange with each
                                    ADDRESS; prints one JSON object:
                                    {"ADDRESS": {"tcp": "ok" | error, "udp": "ok" | error}}.
"""

import json
import selectors
import socket
import sys
import threading


def echo_tcp(c):
    """Echoes what a connection sends until it closes."""
    try:
        while True:
            data = c.recv(4096)
            if not data:
                break
            c.sendall(data)
    except OSError:
        pass
    c.close()


def serve(port, addresses):
    sel = selectors.DefaultSelector()
    for a in addresses:
        family = socket.AF_INET6 if ":" in a else socket.AF_INET
        t = socket.socket(family, socket.SOCK_STREAM)
        t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        t.bind((a, port))
        t.listen(64)
        sel.register(t, selectors.EVENT_READ, "accept")
        u = socket.socket(family, socket.SOCK_DGRAM)
        u.bind((a, port))
        sel.register(u, selectors.EVENT_READ, "udp")
    print("ready", flush=True)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if key.data == "accept":
                c, _ = s.accept()
                threading.Thread(target=echo_tcp, args=(c,), daemon=True).start()
            else:
                data, peer = s.recvfrom(2048)
                s.sendto(data, peer)


def ask(port, addresses):
    out = {}
    for a in addresses:
        family = socket.AF_INET6 if ":" in a else socket.AF_INET
        message = ("hello " + a).encode()
        result = {}
        try:
            with socket.create_connection((a, port), timeout=5) as c:
                c.sendall(message)
                got = c.recv(1024)
                result["tcp"] = "ok" if got == message else "got %r" % got
        except OSError as e:
            result["tcp"] = str(e)
        u = socket.socket(family, socket.SOCK_DGRAM)
        u.settimeout(1)
        result["udp"] = "no answer"
        for _ in range(5):
            try:
                u.sendto(message, (a, port))
                got, _ = u.recvfrom(2048)
                result["udp"] = "ok" if got == message else "got %r" % got
                break
            except socket.timeout:
                continue
            except OSError as e:
                result["udp"] = str(e)
                break
        u.close()
        out[a] = result
    print(json.dumps(out))


if __name__ == "__main__":
    cmd, port, addresses = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if cmd == "serve":
        serve(port, addresses)
    else:
        ask(port, addresses)
