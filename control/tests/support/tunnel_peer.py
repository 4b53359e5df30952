#!/usr/bin/env python3
"""The client side of a veth pair in front of vipgate: sends UDP and opens TCP connections
to a VIP through the kernel's own stack, and captures on the same interface what comes
back tunnelled (IPIP or GUE). Prints one JSON object:
{"tunnelled": [{"encap", "outer_src", "outer_dst", "inner_src", "inner_dst",
"inner_proto", "inner_sport", "inner_dport"}...], "arp_answered": bool}."""

import argparse
import ipaddress
import json
import socket
import struct
import time

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


def parse_inner(encap, outer_src, outer_dst, inner):
    if len(inner) < 24 or inner[0] >> 4 != 4:
        return None
    ihl = (inner[0] & 0x0F) * 4
    proto = inner[9]
    sport, dport = struct.unpack("!HH", inner[ihl:ihl + 4])
    return {
        "encap": encap,
        "outer_src": outer_src,
        "outer_dst": outer_dst,
        "inner_src": str(ipaddress.IPv4Address(inner[12:16])),
        "inner_dst": str(ipaddress.IPv4Address(inner[16:20])),
        "inner_proto": proto,
        "inner_sport": sport,
        "inner_dport": dport,
    }


def parse(frame, gue_port):
    """A tunnelled packet, or None."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    outer_src = str(ipaddress.IPv4Address(ip[12:16]))
    outer_dst = str(ipaddress.IPv4Address(ip[16:20]))
    if ip[9] == 4:
        return parse_inner("ipip", outer_src, outer_dst, ip[ihl:])
    if ip[9] == 17 and struct.unpack("!H", ip[ihl + 2:ihl + 4])[0] == gue_port:
        return parse_inner("gue", outer_src, outer_dst, ip[ihl + 8 + 4:])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--iface", required=True)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--udp-port", type=int, required=True)
    ap.add_argument("--tcp-port", type=int, required=True)
    ap.add_argument("--flows", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--gue-port", type=int, default=6080)
    a = ap.parse_args()

    cap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    cap.bind((a.iface, 0))
    cap.settimeout(0.05)

    udp = []
    tcp = []
    for i in range(a.flows):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("0.0.0.0", 30000 + i))
        udp.append(u)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("0.0.0.0", 31000 + i))
        t.setblocking(False)
        tcp.append(t)
    # The first datagram waits on ARP; send a few rounds.
    for t in tcp:
        try:
            t.connect((a.vip, a.tcp_port))
        except BlockingIOError:
            pass

    seen = []
    keys = set()
    arp_answered = False
    end = time.monotonic() + a.seconds
    next_round = 0.0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= next_round:
            for u in udp:
                u.sendto(b"heartbeat", (a.vip, a.udp_port))
            next_round = now + 0.5
        try:
            frame, addr = cap.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] == PACKET_OUTGOING:
            continue
        if frame[12:14] == b"\x08\x06" and len(frame) >= 42 and frame[20:22] == b"\x00\x02":
            if frame[28:32] == ipaddress.IPv4Address("198.51.100.1").packed:
                arp_answered = True
            continue
        p = parse(frame, a.gue_port)
        if p is None:
            continue
        key = (p["encap"], p["inner_proto"], p["inner_sport"], p["outer_dst"])
        if key not in keys:
            keys.add(key)
            seen.append(p)
    print(json.dumps({"tunnelled": seen, "arp_answered": arp_answered}))


if __name__ == "__main__":
    main()
