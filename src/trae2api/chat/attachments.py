"""The image use case: load a request's image parts and check the model accepts images.

Images are loaded once per request (data URLs decoded, remote URLs fetched behind the SSRF
guard) before anything is uploaded; what a dialect does with them is the dialect's business.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from trae2api.errors import InvalidRequest
from trae2api.upstream.imagefetch import ImageFetcher, load_image
from trae2api.wire.images import ImageData
from trae2api.wire.translate import ChatRequest, ImagePart

# Per turn, its images: loaded, or (agent dialect, INLINE_REMOTE_IMAGES=false) the remote URL.
TurnImages = list[list[ImageData | str]]
_PARALLEL_FETCHES = 4


class Multimodal(Protocol):
    """What the catalogue can say about a model and images (None: it does not know it)."""

    async def accepts_images(self, model_id: str) -> bool | None: ...


class Attachments:
    """Loads and checks the images of chat requests."""

    def __init__(
        self,
        fetcher: ImageFetcher,
        catalog: Multimodal,
        *,
        max_bytes: int,
        inline_remote: bool = True,
    ) -> None:
        self._fetcher = fetcher
        self._catalog = catalog
        self._max_bytes = max_bytes
        self._inline_remote = inline_remote
        self._slots = asyncio.Semaphore(_PARALLEL_FETCHES)

    async def load(self, request: ChatRequest) -> TurnImages | None:
        """The request's images per turn, or None when it has none."""
        if not any(turn.images for turn in request.turns):
            return None
        # Issue contract: a model that does not take images is refused before any upload.
        if await self._catalog.accepts_images(request.model) is False:
            raise InvalidRequest(
                f"The model '{request.model}' does not accept images; GET /v1/models shows "
                f"which models are multimodal",
                param="model",
                code="model_not_multimodal",
            )
        return list(
            await asyncio.gather(
                *(self._turn(turn.images) for turn in request.turns),
            )
        )

    async def _turn(self, parts: tuple[ImagePart, ...]) -> list[ImageData | str]:
        return list(await asyncio.gather(*(self._one(part) for part in parts)))

    async def _one(self, part: ImagePart) -> ImageData | str:
        if not self._inline_remote and not part.url.startswith("data:"):
            return part.url
        async with self._slots:
            return await load_image(
                part.url, self._fetcher, max_bytes=self._max_bytes, param=part.param
            )

    async def aclose(self) -> None:
        await self._fetcher.aclose()
