#!/usr/bin/env python3
"""Long-lived TCP connections to a VIP's echo service, each one checked every INTERVAL:
the client side of the fleet tests.

    fleet_client.py --vip ADDRESS --port PORT --dir DIR [--first N] [--second M]

Opens N connections (each from its own source port), writes DIR/first-open once every one
is open, waits for DIR/second to exist, opens M more, writes DIR/second-open, and keeps
every connection talking (a line every INTERVAL, its echo awaited) until DIR/stop exists.
Then prints one JSON object per group: how many were opened, which broke (reset, closed,
an echo late by more than --timeout), and the longest time a connection that did not
break went without an echo (the outage it saw).
"""

import argparse
import json
import os
import socket
import threading
import time


class Conn(threading.Thread):
    def __init__(self, args, group, n):
        super().__init__(daemon=True)
        self.args, self.group, self.n = args, group, n
        self.error = None
        self.max_gap = 0.0
        self.opened = threading.Event()

    def run(self):
        a = self.args
        try:
            s = socket.create_connection((a.vip, a.port), timeout=a.timeout)
        except OSError as e:
            self.error = "connect: %s" % e
            self.opened.set()
            return
        self.opened.set()
        s.settimeout(a.timeout)
        last = time.monotonic()
        i = 0
        try:
            while not os.path.exists(os.path.join(a.dir, "stop")):
                line = ("%s-%d-%d\n" % (self.group, self.n, i)).encode()
                s.sendall(line)
                got = b""
                while not got.endswith(b"\n"):
                    chunk = s.recv(256)
                    if not chunk:
                        raise OSError("closed by the peer")
                    got += chunk
                if got != line:
                    raise OSError("echo %r for %r" % (got, line))
                now = time.monotonic()
                self.max_gap = max(self.max_gap, now - last)
                last = now
                i += 1
                time.sleep(a.interval)
        except OSError as e:
            self.error = str(e) or e.__class__.__name__
            with open(os.path.join(a.dir, "broken.log"), "a") as log:
                log.write("%s %d %s\n" % (self.group, self.n, self.error))
        finally:
            s.close()


def group(args, name, count):
    conns = [Conn(args, name, n) for n in range(count)]
    for c in conns:
        c.start()
    for c in conns:
        c.opened.wait()
    return conns


def report(conns):
    broken = [{"n": c.n, "error": c.error} for c in conns if c.error]
    gaps = [c.max_gap for c in conns if not c.error]
    return {"opened": len(conns), "broken": broken, "max_gap_s": round(max(gaps, default=0.0), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--first", type=int, default=100)
    ap.add_argument("--second", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.2)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()
    first = group(args, "first", args.first)
    open(os.path.join(args.dir, "first-open"), "w").close()
    second = []
    if args.second:
        while not os.path.exists(os.path.join(args.dir, "second")):
            time.sleep(0.05)
        second = group(args, "second", args.second)
        open(os.path.join(args.dir, "second-open"), "w").close()
    for c in first + second:
        c.join()
    print(json.dumps({"first": report(first), "second": report(second)}))


if __name__ == "__main__":
    main()
