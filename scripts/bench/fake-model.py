"""A slow OpenAI-compatible chat server for benchmarks: every chat completion answers after a
fixed delay (the issue's "slow model server"), one thread per connection, and counts how many
requests it holds at once (GET /stats). Standard library only.

Usage: python3 fake-model.py PORT DELAY_SECONDS
"""
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, DELAY = int(sys.argv[1]), float(sys.argv[2])
lock = threading.Lock()
stats = {"in_flight": 0, "max_in_flight": 0, "served": 0}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        with lock:
            self.reply(dict(stats))

    def do_POST(self):
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        with lock:
            stats["in_flight"] += 1
            stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        time.sleep(DELAY)
        with lock:
            stats["in_flight"] -= 1
            stats["served"] += 1
        self.reply({
            "id": "chatcmpl-bench", "object": "chat.completion", "model": "bench",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "A slow answer."}}],
            "usage": {"prompt_tokens": 20, "completion_tokens": 4, "total_tokens": 24},
        })


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 4096


Server(("127.0.0.1", PORT), Handler).serve_forever()
