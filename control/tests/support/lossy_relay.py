#!/usr/bin/env python3
"""A lossy relay for UDP between appliances, for the fleet's fault tests.

    lossy_relay.py --listen ADDRESS:PORT --to ADDRESS:PORT [--loss P] [--repeat P]
                   [--delay SECONDS] [--seed N]

Forwards every datagram that reaches --listen to --to, and every answer from --to back
to the last sender, after dropping a share P of them (--loss), sending a share twice
(--repeat), and holding each for a random time up to --delay (so that some overtake
others). Prints "ready" once it listens; counts on exit (SIGTERM) to stderr.
"""

import argparse
import heapq
import random
import select
import signal
import socket
import sys
import time


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--to", required=True)
    for share in ("--loss", "--repeat", "--delay"):
        ap.add_argument(share, type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    host, port = a.listen.rsplit(":", 1)
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind((host, int(port)))
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind((host, 0))
    to_host, to_port = a.to.rsplit(":", 1)
    target = (to_host, int(to_port))
    last_sender = None
    queue = []  # (due, n, socket, data, address)
    counts = {"in": 0, "lost": 0, "repeated": 0, "out": 0}
    n = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    print("ready", flush=True)
    while not stop:
        timeout = 0.05 if not queue else max(0.0, min(0.05, queue[0][0] - time.monotonic()))
        ready, _, _ = select.select([front, back], [], [], timeout)
        for s in ready:
            data, addr = s.recvfrom(4096)
            counts["in"] += 1
            if s is front:
                last_sender = addr
                out, dest = back, target
            elif last_sender is not None:
                out, dest = front, last_sender
            else:
                continue
            if rng.random() < a.loss:
                counts["lost"] += 1
                continue
            copies = 2 if rng.random() < a.repeat else 1
            counts["repeated"] += copies - 1
            for _ in range(copies):
                n += 1
                heapq.heappush(queue, (time.monotonic() + rng.random() * a.delay, n, out, data, dest))
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, data, dest = heapq.heappop(queue)
            out.sendto(data, dest)
            counts["out"] += 1
    print(counts, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
