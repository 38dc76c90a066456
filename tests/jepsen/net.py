"""Hosts of the test's own making: network namespaces on one Linux bridge.

The root namespace plays the "services" side (the Postgres formation, Redis for locks, Redis as the
broker, the webhook receiver), reachable at the bridge's address; each host (the API, two workers)
is a namespace with a veth pair onto the bridge and an address of its own, so its only way to the
services is that link. Faults are applied inside a host's namespace, where they cannot touch
anything else on the machine: nftables rules in a table of the namespace's own (a partition from
chosen ports), ``tc netem`` on its link (delay, loss), SIGSTOP of every process in it (a paused
host). Deleting the namespace removes its rules, qdisc and link with it.

Needs root, ``ip`` (iproute2), ``nft`` and ``tc``. Traffic goes only to the test's own addresses.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

SUBNET = ipaddress.ip_network("10.231.0.0/24")  # the test's own; nothing else on the machine uses it
PREFIX = "bkj"  # every namespace and link this module makes starts so (and only they do)
LOCK = Path("/run/bank-jepsen.lock")


def sh(*args: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {done.stderr.strip()}")
    return done


@dataclass
class Host:
    name: str
    ns: str
    address: str
    link: str  # the namespace's side of its veth pair
    paused: bool = False

    def command(self, *args: str) -> list[str]:
        """``args`` as run inside this host's namespace."""
        return ["ip", "netns", "exec", self.ns, *args]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*self.command(*args), check=check)

    def pids(self) -> list[int]:
        return [int(p) for p in sh("ip", "netns", "pids", self.ns, check=False).stdout.split()]

    def cut(self, ports: Sequence[int], name: str) -> None:
        """Drop every packet between this host and the services' ``ports`` (both ways), in a
        table of its own named ``name``; ``heal(name)`` removes it."""
        table = f"{PREFIX}_{name}"
        wanted = ", ".join(str(p) for p in ports)
        rules = (
            f"table inet {table} {{\n"
            f"  chain out {{ type filter hook output priority -10; tcp dport {{ {wanted} }} drop; }}\n"
            f"  chain in {{ type filter hook input priority -10; tcp sport {{ {wanted} }} drop; }}\n"
            "}\n"
        )
        subprocess.run(self.command("nft", "-f", "-"), input=rules, text=True, check=True, timeout=20)

    def heal(self, name: str) -> None:
        self.run("nft", "delete", "table", "inet", f"{PREFIX}_{name}", check=False)

    def degrade(self, delay_ms: int, loss_pct: int) -> str:
        """A slow, lossy link out of the host. With ``tc netem`` when the kernel has it (a fixed
        delay and random loss); this machine's kernel is built without it (CONFIG_NET_SCH_NETEM
        unset, no modules), so then: random loss by an nftables rule (``numgen random``) and a
        narrow ``tbf`` bottleneck whose queue delays packets by up to ``delay_ms``. Returns which."""
        netem = ["tc", "qdisc", "replace", "dev", self.link, "root", "netem", "delay", f"{delay_ms}ms"]
        netem += ["loss", f"{loss_pct}%"]
        if self.run(*netem, check=False).returncode == 0:
            return f"netem delay {delay_ms} ms, loss {loss_pct}%"
        self.run(
            "tc", "qdisc", "replace", "dev", self.link, "root", "tbf",
            "rate", "256kbit", "burst", "4kb", "latency", f"{delay_ms}ms",
        )  # fmt: skip
        rules = (
            f"table inet {PREFIX}_loss {{\n"
            f"  chain out {{ type filter hook output priority -5; numgen random mod 100 < {loss_pct} drop; }}\n"
            f"  chain in {{ type filter hook input priority -5; numgen random mod 100 < {loss_pct} drop; }}\n"
            "}\n"
        )
        subprocess.run(self.command("nft", "-f", "-"), input=rules, text=True, check=True, timeout=20)
        return f"tbf 256 kbit/s with up to {delay_ms} ms of queue, nftables loss {loss_pct}% each way"

    def restore(self) -> None:
        self.run("tc", "qdisc", "del", "dev", self.link, "root", check=False)
        self.heal("loss")

    def pause(self) -> None:
        """SIGSTOP every process of the host, as a frozen VM or a long GC pause would."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.paused = False


@dataclass
class Network:
    """A bridge with the services' address (``.1``) and the hosts on it."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:5])
    hosts: dict[str, Host] = field(default_factory=dict)
    _lock: IO[bytes] | None = None

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.tag}br"

    @property
    def gateway(self) -> str:
        return str(SUBNET.network_address + 1)

    def up(self) -> Network:
        # One run at a time on the machine (one subnet): a second refuses to start rather than take
        # the first's leftovers for its own and remove them.
        self._lock = LOCK.open("wb")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            raise RuntimeError(f"another run of the harness holds {LOCK}") from None
        _remove_leftovers()
        sh("ip", "link", "add", self.bridge, "type", "bridge", "forward_delay", "0")
        sh("ip", "addr", "add", f"{self.gateway}/{SUBNET.prefixlen}", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        return self

    def add(self, name: str) -> Host:
        n = len(self.hosts) + 1
        host = Host(
            name=name,
            ns=f"{PREFIX}{self.tag}-{name}",
            address=str(SUBNET.network_address + 10 + n),
            link=f"{PREFIX}{self.tag}{n}h",
        )
        outer = f"{PREFIX}{self.tag}{n}o"
        sh("ip", "netns", "add", host.ns)
        sh("ip", "link", "add", outer, "type", "veth", "peer", "name", host.link, "netns", host.ns)
        sh("ip", "link", "set", outer, "master", self.bridge, "up")
        host.run("ip", "link", "set", "lo", "up")
        host.run("ip", "addr", "add", f"{host.address}/{SUBNET.prefixlen}", "dev", host.link)
        host.run("ip", "link", "set", host.link, "up")
        self.hosts[name] = host
        self._wait_reachable(host)
        return host

    def _wait_reachable(self, host: Host) -> None:
        """Until a TCP connection from the host to the services' address goes through (a fresh
        veth pair and bridge port take a moment to forward)."""
        with socket.socket() as listener:
            listener.bind((self.gateway, 0))
            listener.listen()
            probe = f"import socket; socket.create_connection(('{self.gateway}', {listener.getsockname()[1]}), 1)"
            deadline = time.monotonic() + 20
            while host.run(sys.executable, "-c", probe, check=False).returncode != 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"host {host.name} cannot reach {self.gateway}")
                time.sleep(0.2)

    def down(self) -> None:
        """Kill what still runs in the hosts and remove them and the bridge (the hosts' rules,
        qdiscs and veth pairs go with their namespaces)."""
        for host in self.hosts.values():
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    os.kill(pid, signal.SIGCONT)
            sh("ip", "netns", "delete", host.ns, check=False)
        sh("ip", "link", "delete", self.bridge, check=False)
        if self._lock is not None:
            self._lock.close()  # releases the flock


def _remove_leftovers() -> None:
    """A run killed before its cleanup (SIGKILL of pytest) leaves its namespaces and bridge; only
    this module's, by their prefix, are removed."""
    for line in sh("ip", "netns", "list", check=False).stdout.splitlines():
        ns = line.split()[0] if line.split() else ""
        if ns.startswith(PREFIX):
            sh("ip", "netns", "delete", ns, check=False)
    for line in sh("ip", "-o", "link", "show", "type", "bridge", check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX):
            sh("ip", "link", "delete", name, check=False)
