"""A file server for HTTPInputTests with the faults a real host has. Serves ROOT on 127.0.0.1 at an ephemeral port
(printed as the first line of stdout). Python's http.server ignores Range, so this one answers it (206 with
Content-Range). The first path segment picks the behaviour for the file named by the rest:

  /files/NAME     plain, honours Range
  /drop/NAME      every answer stops after a third of the file and closes the connection (Content-Length says all)
  /norange/NAME   the first answer stops as drop does; Range is ignored (later answers are 200 with the whole file)
  /badrange/NAME  the first answer stops as drop does; a Range answer's Content-Range starts one byte late
  /flaky/NAME     503 (no Retry-After) to the first two requests, then plain
  /stall/NAME     the first answer sends half, then nothing for 30 s; later ones plain
  /redirect/NAME  302 to /files/NAME
  /gone/...       404
  /_log           JSON: every request so far ([path, Range header]) and the most connections open at once
"""
import json, os, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

root = sys.argv[1]
lock = threading.Lock()
requests, counts = [], {}
state = {"open": 0, "max_open": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/_log":
            body = json.dumps({"requests": requests, "max_open": state["max_open"]}).encode()
            return self.answer(200, body, close=False)
        with lock:
            requests.append([self.path, self.headers.get("Range")])
            counts[self.path] = counts.get(self.path, 0) + 1
            n = counts[self.path]
            state["open"] += 1
            state["max_open"] = max(state["max_open"], state["open"])
        try:
            self.serve(n)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with lock:
                state["open"] -= 1

    def serve(self, n):
        mode, _, name = self.path.lstrip("/").partition("/")
        if mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "/files/" + name)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path = os.path.join(root, name)
        if mode == "gone" or not os.path.isfile(path):
            return self.answer(404, b"not found")
        if mode == "flaky" and n <= 2:
            return self.answer(503, b"busy")
        data = open(path, "rb").read()
        start = 0
        rng = self.headers.get("Range")
        if rng and mode != "norange":
            start = int(rng.split("=")[1].split("-")[0])
        body = data[start:]
        self.send_response(206 if start else 200)
        if start:
            first = start + 1 if mode == "badrange" else start
            self.send_header("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        if mode == "drop" or (mode in ("norange", "badrange") and n == 1):
            cut = max(1, len(data) // 3)
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if mode == "stall" and n == 1:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(30)
            self.close_connection = True
            return
        self.wfile.write(body)

    def answer(self, status, body, close=True):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    daemon_threads = True


server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
