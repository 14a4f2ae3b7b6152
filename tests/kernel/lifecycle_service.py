"""A small service with three workloads, each reaching other syscalls.

    service.py files DIR    write, fsync, rename, list and read back files in DIR
    service.py net DIR PORT a TCP server on localhost:PORT in a thread, one request
    service.py child DIR    run a child process and read its output through a pipe
"""
import os
import socket
import subprocess
import sys
import threading


def files(d: str, *_: str) -> None:
    for i in range(3):
        tmp = os.path.join(d, f"part{i}.tmp")
        with open(tmp, "w") as fh:
            fh.write("x" * 100)
            fh.flush()
            os.fsync(fh.fileno())
        os.rename(tmp, os.path.join(d, f"part{i}"))
    assert sorted(os.listdir(d)) == ["part0", "part1", "part2"]
    assert sum(os.stat(os.path.join(d, n)).st_size for n in os.listdir(d)) == 300


def net(_d: str, port: str = "0") -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(port)))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        conn.sendall(conn.recv(64).upper())
        conn.close()
    t = threading.Thread(target=serve)
    t.start()
    with socket.create_connection(srv.getsockname()) as c:
        c.sendall(b"ping")
        assert c.recv(64) == b"PING"
    t.join()
    srv.close()


def child(_d: str, *_: str) -> None:
    out = subprocess.run(["/bin/echo", "hello"], capture_output=True, check=True).stdout
    assert out == b"hello\n"


if __name__ == "__main__":
    {"files": files, "net": net, "child": child}[sys.argv[1]](*sys.argv[2:])
    print("ok")
