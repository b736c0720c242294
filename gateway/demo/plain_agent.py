"""A plain a2a-sdk agent with no users: the SDK's own request handler and task store, nothing added.

The upstream of the ``a2a`` profile's demo act and of its tests. It is what
``a2a-sdk`` gives anyone who follows its quick start: ``DefaultRequestHandler``
over ``InMemoryTaskStore`` (and ``InMemoryPushNotificationConfigStore``),
JSON-RPC on ``/`` in both method generations (``enable_v0_3_compat``) and the
card at ``/.well-known/agent-card.json``. No authentication middleware runs,
so every caller is the SDK's ``UnauthenticatedUser`` and shares one task
store: whoever knows a task or context id can read, continue or cancel it.
The ``X-User-Id`` header the gateway sends is never read.

The executor echoes the text, and ``metadata.initiated_by`` (set by the
gateway on writes through a share). Message metadata ``delaySeconds`` makes a
long-running task; ``ticks`` (with ``tickSeconds``) reports "tick N" that often
first. With ``--capture``, ``GET /_demo/requests`` lists every request received
(method, path, headers, body) and ``DELETE`` clears the list.
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from a2a.helpers import get_message_text, new_task_from_user_message, new_text_part
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryPushNotificationConfigStore, InMemoryTaskStore, TaskUpdater
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill, TaskState
from starlette.applications import Starlette
from starlette.types import ASGIApp

from gateway.demo.capture import capturing


class EchoExecutor(AgentExecutor):
    """Echoes the user's text as an artifact, naming ``metadata.initiated_by``."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        message = context.message
        assert message is not None
        assert context.task_id is not None
        assert context.context_id is not None
        if context.current_task is None:
            await event_queue.enqueue_event(new_task_from_user_message(message))
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.start_work(updater.new_agent_message([new_text_part("thinking…")]))
        metadata = dict(message.metadata)
        for tick in range(min(int(metadata.get("ticks", 0) or 0), 1000)):
            await asyncio.sleep(float(metadata.get("tickSeconds", 0.05) or 0.05))
            await updater.update_status(
                TaskState.TASK_STATE_WORKING, updater.new_agent_message([new_text_part(f"tick {tick}")])
            )
        await asyncio.sleep(0.01 + float(metadata.get("delaySeconds", 0) or 0))
        text = get_message_text(message)
        initiated_by = metadata.get("initiated_by", "-")
        await updater.add_artifact(
            [new_text_part(f"echo: {text} [initiated_by={initiated_by}]")], artifact_id="echo", name="echo"
        )
        await updater.complete(updater.new_agent_message([new_text_part(f"echo: {text}")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        assert context.task_id is not None
        assert context.context_id is not None
        updater = TaskUpdater(event_queue, context.task_id, context.context_id)
        await updater.cancel(updater.new_agent_message([new_text_part("cancelled")]))


def agent_card(url: str, *, extended: bool = False) -> AgentCard:
    """The agent's card (``extended``: the one ``GetExtendedAgentCard`` answers, one skill more)."""
    skills = [AgentSkill(id="echo", name="Echo", description="Repeats what you say.", tags=["echo"])]
    if extended:
        skills.append(AgentSkill(id="shout", name="Shout", description="For signed-in users.", tags=["echo"]))
    return AgentCard(
        name="Plain Echo Agent",
        description="An a2a-sdk agent with no users (share-gateway demo).",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="1.0"),
            AgentInterface(url=url, protocol_binding="JSONRPC", protocol_version="0.3"),
        ],
        capabilities=AgentCapabilities(streaming=True, push_notifications=True, extended_agent_card=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=skills,
    )


def build_app(url: str) -> Starlette:
    """The agent as an ASGI app; ``url``: where clients reach it (its card's interface URL)."""
    handler = DefaultRequestHandler(
        agent_executor=EchoExecutor(),
        task_store=InMemoryTaskStore(),
        agent_card=agent_card(url),
        push_config_store=InMemoryPushNotificationConfigStore(),
        extended_agent_card=agent_card(url, extended=True),
    )
    routes = [
        *create_agent_card_routes(agent_card(url)),
        *create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True),
    ]
    return Starlette(routes=routes)


def main(argv: list[str] | None = None) -> None:
    """``python -m gateway.demo.plain_agent --port 9999 [--capture]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9999)
    parser.add_argument("--capture", action="store_true", help="serve /_demo/requests")
    args = parser.parse_args(argv)
    app: ASGIApp = build_app(f"http://{args.host}:{args.port}/")
    if args.capture:
        app = capturing(app)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
