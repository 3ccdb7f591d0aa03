"""vLLM's runtime LoRA routes: POST /v1/load_lora_adapter and /v1/unload_lora_adapter (same bodies and replies)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from ministudio_serve.deps import AdaptersDep
from ministudio_serve.schemas.openai import LoadLoRARequest, UnloadLoRARequest

router = APIRouter(prefix="/v1", tags=["adapters"])


@router.post("/load_lora_adapter", response_class=PlainTextResponse)
async def load_lora_adapter(body: LoadLoRARequest, adapters: AdaptersDep) -> str:
    await adapters.load(body.lora_name, body.lora_path)
    return f"Success: LoRA adapter '{body.lora_name}' added successfully."


@router.post("/unload_lora_adapter", response_class=PlainTextResponse)
async def unload_lora_adapter(body: UnloadLoRARequest, adapters: AdaptersDep) -> str:
    await adapters.unload(body.lora_name)
    return f"Success: LoRA adapter '{body.lora_name}' removed successfully."
