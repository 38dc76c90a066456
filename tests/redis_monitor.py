"""Redis MONITOR as a context manager: the commands clients send during a block (round trips)."""

from __future__ import annotations

import threading
import time

from redis import Redis


class Monitor:
    """Redis MONITOR in a thread: every command a client sent that names ``needle`` (one EVALSHA
    is one round trip; what the script calls inside Redis is left out)."""

    def __init__(self, client: Redis, needle: str) -> None:
        self.client, self.needle = client, needle
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.client.monitor() as m:
            self._ready.set()
            for event in m.listen():
                command = str(event["command"])
                if command.startswith("ECHO") and "monitor-stop" in command:
                    return
                if self.needle in command and event.get("client_type") != "lua":  # not the script's own calls
                    self.commands.append(command.split()[0].upper())

    def __enter__(self) -> Monitor:
        self._thread.start()
        assert self._ready.wait(10)
        time.sleep(0.2)  # MONITOR is on before the first request
        return self

    def __exit__(self, *_: object) -> None:
        self.client.echo("monitor-stop")
        self._thread.join(10)
