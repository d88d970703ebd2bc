"""The bridge's client of the commerce service: the few `/v1` calls it makes."""

from __future__ import annotations

from typing import Any

import aiohttp


class CommerceError(Exception):
    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        super().__init__(f"commerce service answered {status}: {body}")


class CommerceClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str):
        self.session = session
        self.base_url = base_url
        self.headers = {"Authorization": f"Bearer {api_key}"}

    async def get(self, path: str, timeout_s: float = 30, **params: str) -> Any:
        async with self.session.get(
            f"{self.base_url}{path}",
            params=params,
            headers=self.headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                raise CommerceError(response.status, body)
            return body

    async def shops(self) -> list[dict[str, Any]]:
        return list((await self.get("/v1/shops"))["shops"])

    async def shop(self, shop_id: str) -> dict[str, Any] | None:
        try:
            return dict(await self.get(f"/v1/shops/{shop_id}"))
        except CommerceError as e:
            if e.status == 404:
                return None
            raise

    async def events(self, after: str, timeout_ms: int) -> dict[str, Any]:
        return dict(
            await self.get(
                "/v1/events",
                timeout_s=timeout_ms / 1000 + 30,
                after=after,
                timeout=str(timeout_ms),
            )
        )

    async def download(self, url: str) -> tuple[bytes, str]:
        async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response:
            if response.status != 200:
                raise CommerceError(response.status, await response.text())
            return await response.read(), response.content_type
