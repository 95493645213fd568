#!/usr/bin/env python3
"""TCP transfers for tests/netns/full_chain.sh: one connection, the bytes counted and hashed.

  fc_tcp.py serve-send PORT FILE   accept one connection, send FILE, close
  fc_tcp.py serve-recv PORT        accept one connection, read to EOF
  fc_tcp.py recv HOST PORT         connect, read to EOF
  fc_tcp.py send HOST PORT FILE    connect, send FILE, close

Each prints one line: bytes=N sha256=HEX secs=S mbit=R (the receiving side's figures), and the
listening modes print "listening" first, once the socket is ready. Every socket operation has a
timeout, so a broken tunnel fails instead of hanging.
"""
import hashlib
import socket
import sys
import time

TIMEOUT = 30


def drain(conn):
    h = hashlib.sha256()
    n = 0
    t0 = time.monotonic()
    while True:
        b = conn.recv(65536)
        if not b:
            break
        h.update(b)
        n += len(b)
    secs = max(time.monotonic() - t0, 1e-6)
    print(f"bytes={n} sha256={h.hexdigest()} secs={secs:.3f} mbit={n * 8 / secs / 1e6:.1f}", flush=True)


def pour(conn, path):
    with open(path, "rb") as f:
        data = f.read()
    conn.sendall(data)
    conn.shutdown(socket.SHUT_WR)
    # Wait for the peer to close, so that everything was delivered.
    while conn.recv(65536):
        pass


def listen(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(1)
    s.settimeout(TIMEOUT)
    print("listening", flush=True)
    conn, _ = s.accept()
    conn.settimeout(TIMEOUT)
    return conn


def connect(host, port):
    return socket.create_connection((host, port), timeout=TIMEOUT)


def main(argv):
    mode = argv[1]
    if mode == "serve-send":
        conn = listen(int(argv[2]))
        pour(conn, argv[3])
    elif mode == "serve-recv":
        drain(listen(int(argv[2])))
    elif mode == "recv":
        drain(connect(argv[2], int(argv[3])))
    elif mode == "send":
        pour(connect(argv[2], int(argv[3])), argv[4])
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main(sys.argv)
