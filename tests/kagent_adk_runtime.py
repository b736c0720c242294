"""kagent's real agent runtime (kagent-adk) with a scripted model: no LLM, no network.

Run by ``tests/test_kagent_adk.py`` with an interpreter that has ``kagent-adk``
installed (``python tests/kagent_adk_runtime.py CONTROLLER_URL PORT``). It is
kagent-adk's own ``KAgentApp`` (``python/packages/kagent-adk/src/kagent/adk/_a2a.py``):
its session service, event log and task store call back into the controller
at CONTROLLER_URL exactly as in a kagent agent pod. The model answers
``echo: <the user's text>``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncGenerator

import uvicorn
from a2a.types import AgentCapabilities, AgentCard
from google.adk.agents import LlmAgent
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.genai import types
from kagent.adk import KAgentApp


class ScriptedModel(BaseLlm):
    """An ADK model that echoes the last user turn."""

    model: str = "scripted-echo"

    async def generate_content_async(
        self, llm_request: LlmRequest, stream: bool = False
    ) -> AsyncGenerator[LlmResponse, None]:
        text = ""
        for content in llm_request.contents:
            if content.role == "user":
                text = "".join(part.text or "" for part in content.parts or [])
        yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text=f"echo: {text}")]))


def main() -> None:
    controller, port = sys.argv[1], int(sys.argv[2])
    card = AgentCard(
        name="echo", description="kagent-adk with a scripted model", url=f"http://127.0.0.1:{port}/",
        version="1", capabilities=AgentCapabilities(streaming=True), default_input_modes=["text"],
        default_output_modes=["text"], skills=[],
    )
    app = KAgentApp(
        lambda: LlmAgent(name="echo", model=ScriptedModel(), instruction="echo"),
        card, controller, "demo__NS__echo",
    ).build()
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
