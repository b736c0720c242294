"""A2A agents with no users, for the ``a2a`` profile's tests: run as ``python -m tests.a2a_agents KIND --port N``.

``a2a-sdk``: ``gateway.demo.plain_agent`` — a2a-sdk's ``DefaultRequestHandler``
over its ``InMemoryTaskStore``, no authentication (every caller is one
anonymous user to it). ``fasta2a``: a second, independent implementation
(pydantic's ``fasta2a``: ``FastA2A`` with its ``InMemoryStorage`` and
``InMemoryBroker``) with a scripted worker that echoes the text and
``metadata.initiated_by``. Both record what they receive at ``/_demo/requests``.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import uvicorn
from fasta2a import FastA2A, Worker
from fasta2a.broker import InMemoryBroker
from fasta2a.schema import Artifact, Message, TaskIdParams, TaskSendParams
from fasta2a.storage import InMemoryStorage

from gateway.demo import plain_agent


class EchoWorker(Worker[list[Message]]):
    """Echoes the message text; ``metadata.delaySeconds`` keeps the task working that long first."""

    async def run_task(self, params: TaskSendParams) -> None:
        task_id, context_id = params["id"], params["context_id"]
        await self.storage.update_task(task_id, state="working")
        await self.publish_status(task_id, context_id, "working")
        message = params["message"]
        metadata = message.get("metadata") or {}
        await anyio.sleep(0.01 + float(metadata.get("delaySeconds", 0) or 0))
        text = "".join(str(part.get("text", "")) for part in message["parts"])
        artifact = Artifact(
            artifact_id="echo",
            name="echo",
            parts=[{"text": f"echo: {text} [initiated_by={metadata.get('initiated_by', '-')}]"}],
        )
        task = await self.storage.load_task(task_id)
        if task is not None and task["status"]["state"] == "canceled":
            return
        await self.publish_artifact(task_id, context_id, artifact)
        await self.storage.update_task(task_id, state="completed", new_artifacts=[artifact])

    async def cancel_task(self, params: TaskIdParams) -> None:
        await self.storage.update_task(params["id"], state="canceled")

    def build_message_history(self, history: list[Message]) -> list[Any]:
        return list(history)

    def build_artifacts(self, result: Any) -> list[Artifact]:
        return []


def fasta2a_app(url: str) -> FastA2A:
    """A fasta2a agent: in-memory storage and broker, the echo worker running in its lifespan."""
    storage: InMemoryStorage[list[Message]] = InMemoryStorage()
    broker = InMemoryBroker()
    worker = EchoWorker(broker=broker, storage=storage)

    @asynccontextmanager
    async def lifespan(app: FastA2A) -> AsyncIterator[None]:
        async with app.task_manager, worker.run():
            yield

    return FastA2A(storage=storage, broker=broker, name="fasta2a echo", url=url, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["a2a-sdk", "fasta2a"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}/"
    app = plain_agent.build_app(url) if args.kind == "a2a-sdk" else fasta2a_app(url)
    uvicorn.run(plain_agent.capturing(app), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
