#!/usr/bin/env python3
"""A second, plain implementation of the hashing contract in engine/src/maglev.rs.

It follows the module doc, not the Rust code, and prints the golden values that the tests
pin (engine/src/maglev.rs `golden_hashes`, engine/tests/maglev.rs `determinism_golden_digest`).
Run it after any change to the contract's text: its output and the tests must agree.
"""
import ipaddress

M64 = (1 << 64) - 1
K0 = 0x9E3779B97F4A7C15
K1 = 0xC2B2AE3D27D4EB4F


def fmix64(x):
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    x ^= x >> 33
    return x


def hash64(seed, data):
    h = fmix64(seed ^ K0 ^ ((len(data) * K1) & M64))
    for i in range(0, len(data), 8):
        chunk = data[i:i + 8].ljust(8, b"\0")
        h = (fmix64(h ^ int.from_bytes(chunk, "little")) + K0) & M64
    return fmix64(h)


def identity(addr, port=None):
    a = ipaddress.ip_address(addr)
    has_port = 0 if port is None else 1
    return bytes([a.version]) + a.packed + bytes([has_port]) + (port or 0).to_bytes(2, "big")


def offset_skip(seed, ident, m):
    return hash64(seed, ident) % m, hash64(seed ^ K1, ident) % (m - 1) + 1


def flow_hash(seed, src, dst, protocol, sport, dport):
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 4:
        h = fmix64(seed ^ K0 ^ (int(s) << 32 | int(d)))
    else:
        si, di = int(s), int(d)
        h = fmix64(seed ^ K0 ^ (si >> 64))
        h = fmix64(h ^ (si & M64))
        h = fmix64(h ^ (di >> 64))
        h = fmix64(h ^ (di & M64))
    return fmix64(h ^ (sport << 32 | dport << 16 | protocol) ^ K1) >> 32


def populate(backends, seed, m):
    """backends: [(identity bytes, weight)]; returns (sorted backends, slots)."""
    ordered = sorted(backends, key=lambda b: b[0])
    w_max = max(w for _, w in ordered)
    turns = []
    for index, (ident, weight) in enumerate(ordered):
        if weight:
            offset, skip = offset_skip(seed, ident, m)
            turns.append({"index": index, "weight": weight, "credit": 0, "skip": skip, "next": offset})
    slots = [None] * m
    filled = 0
    while True:
        for t in turns:
            t["credit"] += t["weight"]
            if t["credit"] < w_max:
                continue
            t["credit"] -= w_max
            c = t["next"]
            while slots[c] is not None:
                c = (c + t["skip"]) % m
            slots[c] = t["index"]
            t["next"] = (c + t["skip"]) % m
            filled += 1
            if filled == m:
                return ordered, slots


def fnv1a(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def pool(n, weight):
    return [(identity(str(ipaddress.ip_address(0xC0000200 + (i // 250) * 0x10000 + i % 250 + 1))), weight)
            for i in range(n)]


def main():
    print("fmix64(1)               ", hex(fmix64(1)))
    print("hash64(0, '')           ", hex(hash64(0, b"")))
    print("hash64(24301, 'vipgate')", hex(hash64(24301, b"vipgate")))
    print("offset_skip 192.0.2.11  ", offset_skip(24301, identity("192.0.2.11"), 65537))
    print("flow_hash v4            ", hex(flow_hash(24301, "198.51.100.7", "203.0.113.10", 6, 40000, 8000)))
    print("flow_hash v6            ", hex(flow_hash(24301, "2001:db8::7", "2001:db8:ffff::10", 17, 40000, 8000)))
    backends = pool(10, 100)
    backends[3] = (backends[3][0], 50)
    backends.append((identity("2001:db8::11", 8000), 100))
    ordered, slots = populate(backends, 24301, 65537)
    data = b"".join(i for i, _ in ordered) + b"".join(s.to_bytes(2, "little") for s in slots)
    print("golden digest           ", hex(fnv1a(data)))
    _, small = populate(pool(3, 1), 1, 251)
    print("golden small            ", small[:16])


if __name__ == "__main__":
    main()
