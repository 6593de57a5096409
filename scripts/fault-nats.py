#!/usr/bin/env python3
"""The fault suite's view of its NATS cluster's jobs stream, through the servers' monitoring
endpoints. A server is taken for the stream's leader only when it says so of itself (its `/jsz`
names it as the stream's leader), so a follower's stale view is never mistaken for a leader.

  fault-nats.py PORTS leader                  # the leader's name (n1...), or nothing
  fault-nats.py PORTS wait-leader [NOT]       # waits for a leader (other than NOT); prints seconds
  fault-nats.py PORTS wait-current N          # waits until the leader sees N current followers

PORTS: the servers' monitoring ports, comma-separated. Waits give up after 60 s (exit 1).
"""

import json
import sys
import time
import urllib.request

STREAM = "FAULT_JOBS"


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=0.5) as answer:
            return json.load(answer)
    except (OSError, ValueError):
        return None


NAMES = {}


def led_by(port):
    """(server name, cluster info) when the server on `port` leads the stream, else None."""
    if port not in NAMES:
        varz = get(port, "/varz")
        if not varz:
            return None
        NAMES[port] = varz["server_name"]
    info = get(port, "/jsz?acc=%24G&streams=true") or {}
    for account in info.get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            cluster = stream.get("cluster") or {}
            if stream.get("name") == STREAM and cluster.get("leader") == NAMES[port]:
                return NAMES[port], cluster
    return None


def leader(ports):
    for port in ports:
        found = led_by(port)
        if found:
            return found
    return None


def wait(ports, done):
    start = time.monotonic()
    while time.monotonic() - start < 60:
        found = leader(ports)
        if found and done(*found):
            print(f"{time.monotonic() - start:.1f}")
            return 0
        time.sleep(0.05)
    print("timeout")
    return 1


def main():
    ports, command, *rest = sys.argv[1:]
    ports = ports.split(",")
    if command == "leader":
        found = leader(ports)
        print(found[0] if found else "")
        return 0
    if command == "wait-leader":
        other_than = rest[0] if rest else ""
        return wait(ports, lambda name, _: name != other_than)
    if command == "wait-current":
        want = int(rest[0])
        return wait(
            ports,
            lambda _, cluster: sum(1 for r in cluster.get("replicas") or [] if r.get("current"))
            >= want,
        )
    sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    sys.exit(main())
