"""The wire: pure protocol code (SSE, OpenAI/Trae bodies, events, tool calls, images, SigV4)."""
