"""An independent OCPP 2.0.1 peer for the interoperability tests: ocpp-rpc (npm) in Node.

`tests/interop/node/csms.js` and `station.js` run ocpp-rpc in strict mode (its own bundled
2.0.1 schemas, validated with ajv on every call and result, both ways). They speak to the test
over their standard streams, one JSON object per line: commands in, events out (`peer.js`).
Every strict-validation failure, malformed frame or crash of the Node side is an event that
`NodePeer.failures` collects; the tests assert it stays empty.

`make pytest` installs ocpp-rpc with `npm ci` from the lock file (tests/interop/node); a test
run without it fails with the command to run, it never skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parent.parent / "interop" / "node"
WITHIN = 15.0
"""Seconds an event the test caused gets to arrive (a bound against a hang, not a speed)."""
FAILURES = frozenset({"validation_failure", "bad_message", "fatal", "unexpected_call"})
"""Events that mean a message did not pass, or the peer broke."""


class RpcCallFailed(Exception):
    """The peer's call was answered with a CALLERROR (or refused by its own validation)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def node_ready() -> str | None:
    """Why the Node peer cannot run here (None: it can)."""
    if shutil.which("node") is None:
        return "node is not installed (Node >= 17.3 is needed for ocpp-rpc)"
    if not (NODE_DIR / "node_modules" / "ocpp-rpc" / "package.json").exists():
        return f"ocpp-rpc is not installed: run `make pytest`, or `npm ci` in {NODE_DIR}"
    return None


class NodePeer:
    """One Node process running a peer script, its events as they arrived."""

    def __init__(self, process: asyncio.subprocess.Process, script: str) -> None:
        self.process = process
        self.script = script
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._refs = itertools.count(1)
        self._raw_ids = itertools.count(1)
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(cls, script: str) -> NodePeer:
        problem = node_ready()
        if problem is not None:
            raise AssertionError(problem)
        process = await asyncio.create_subprocess_exec(
            "node",
            str(NODE_DIR / script),
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(process, script)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "fatal", "message": f"not JSON: {line[:300]!r}"}
            self.events.append(event)
            self._changed.set()
        self.events.append({"event": "exited"})
        self._changed.set()

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] in FAILURES]

    def of(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        """The events of `kind` whose fields have these values."""
        return [
            e
            for e in self.events
            if e["event"] == kind and all(e.get(k) == v for k, v in fields.items())
        ]

    async def wait_for(
        self, condition: Callable[[], Any], what: str, timeout: float = WITHIN
    ) -> Any:
        """Until `condition()` is truthy (re-checked on every event); its value."""
        try:
            async with asyncio.timeout(timeout):
                while not (value := condition()):
                    if self.events and self.events[-1]["event"] == "exited":
                        raise AssertionError(f"{self.script} exited: {await self._stderr()}")
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.script}: no {what} within {timeout} s; events: {self.events[-10:]}"
            ) from None
        return value

    async def event(self, kind: str, what: str | None = None, **fields: Any) -> dict[str, Any]:
        """The first event of `kind` with these fields (waiting for it)."""

        def found() -> dict[str, Any] | None:
            matching = self.of(kind, **fields)
            return matching[0] if matching else None

        value: dict[str, Any] = await self.wait_for(found, what or f"{kind} {fields}")
        return value

    async def send(self, op: str, **fields: Any) -> str:
        """A command to the peer; its ref (events answering it carry it)."""
        ref = str(next(self._refs))
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, "ref": ref, **fields}).encode() + b"\n")
        await self.process.stdin.drain()
        return ref

    async def command(self, op: str, **fields: Any) -> None:
        """A command the peer confirms (`done`): in effect when this returns."""
        ref = await self.send(op, **fields)
        await self.event("done", f"{op} done", ref=ref)

    async def call(self, method: str, params: dict[str, Any], **fields: Any) -> Any:
        """A CALL from the peer; its result, or RpcCallFailed with the CALLERROR's code."""
        ref = await self.send("call", method=method, params=params, **fields)

        def answered() -> dict[str, Any] | None:
            for event in reversed(self.events):
                if event.get("ref") == ref and event["event"] in ("result", "call_failed"):
                    return event
            return None

        answer = await self.wait_for(answered, f"answer to {method}")
        if answer["event"] == "call_failed":
            raise RpcCallFailed(str(answer["code"]), str(answer["message"]))
        return answer["result"]

    async def raw(self, action: str, payload: Any, **fields: Any) -> list[Any]:
        """A CALL sent as it is, past the peer's own validation; the frame answering it."""
        frame_id = f"raw-{next(self._raw_ids)}"
        await self.send("raw", frame=[2, frame_id, action, payload], **fields)
        reply = await self.event("raw_reply", f"answer to the raw {action}", id=frame_id)
        frame: list[Any] = reply["frame"]
        return frame

    async def answer(self, request: dict[str, Any], result: Any) -> None:
        """Answer a call the peer handed to the test (event `request`)."""
        await self.send("reply", ref=request["ref"], result=result)

    async def _stderr(self) -> str:
        if self.process.stderr is None:
            return ""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                return (await self.process.stderr.read()).decode(errors="replace")[-3000:]
        return ""

    async def close(self) -> None:
        """End the process (closing its stdin ends it; killed if it does not go)."""
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            async with asyncio.timeout(5):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
