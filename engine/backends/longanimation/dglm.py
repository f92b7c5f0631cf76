"""Dynamic Global-Local Memory (DGLM): SketchDiT tokens read the colors already generated.

Memory arrives as compressed K/V tokens of a few layers of a video encoder
(global: frames sampled over the whole shot so far; local: the latest frames).
Per memory layer an MLP lifts keys and values to the model width, one
cross-attention layer lets the SketchDiT tokens attend to them, and a
zero-initialised `proj_out` (a bare matrix, applied as `x @ proj_out`) makes
a fresh module a no-op. Parameter names follow the released `glm_module.safetensors`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


def _mapping(memory_dim: int, hidden: tuple[int, ...], dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = memory_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.LayerNorm(h), nn.LeakyReLU()]
        width = h
    layers.append(nn.Linear(width, dim))
    return nn.Sequential(*layers)


class MemoryCrossAttention(nn.Module):
    """Queries from the features, keys/values from memory; one LayerNorm shared by K and V."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(dim, inner, bias=False)
        self.to_v = nn.Linear(dim, inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)

    def forward(self, keys: torch.Tensor, values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = self._split(self.to_q(self.norm2(x)))
        k = self._split(self.to_k(self.norm1(keys)))
        v = self._split(self.to_v(self.norm1(values)))
        out = F.scaled_dot_product_attention(q, k, v)
        b, _, n, _ = out.shape
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class DynamicGlobalLocalMemory(ModelMixin, ConfigMixin):
    """Defaults are the release's: 3 memory layers of 512-d K/V, width 3072, 32 heads x 96."""

    @register_to_config
    def __init__(
        self,
        dim: int = 3072,
        num_memory_layers: int = 3,
        memory_dim: int = 512,
        mapping_dims: tuple[int, ...] = (1024, 2048),
        heads: int = 32,
        head_dim: int = 96,
        ff_mult: int = 4,
    ):
        super().__init__()
        if num_memory_layers < 1:
            raise ValueError(f"DGLM needs at least one memory layer, got {num_memory_layers}")
        mapping_dims = tuple(mapping_dims)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    MemoryCrossAttention(dim, heads, head_dim),
                    nn.Sequential(
                        nn.LayerNorm(dim),
                        nn.Linear(dim, dim * ff_mult, bias=False),
                        nn.GELU(),
                        nn.Linear(dim * ff_mult, dim, bias=False),
                    ),
                ]
            )
            for _ in range(num_memory_layers)
        )
        for i in range(num_memory_layers):
            setattr(self, f"key_mapping_{i}", _mapping(memory_dim, mapping_dims, dim))
            setattr(self, f"value_mapping_{i}", _mapping(memory_dim, mapping_dims, dim))
        self.proj_out = nn.Parameter(torch.zeros(dim, dim))

    def forward(self, global_memory: torch.Tensor, local_memory: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Memory (B, 2, layers, tokens, memory_dim) [K then V], features (N, L, dim) -> (N, L, dim) residual.

        The caller adds the result to `features`; B is 1 or N (the CFG batch shares one memory).
        """
        n_layers = self.config.num_memory_layers
        for name, mem in (("global", global_memory), ("local", local_memory)):
            if mem.ndim != 5 or mem.shape[1] != 2 or mem.shape[2] != n_layers or mem.shape[-1] != self.config.memory_dim:
                raise ValueError(
                    f"{name} memory must be (batch, 2, {n_layers}, tokens, {self.config.memory_dim}), "
                    f"got {tuple(mem.shape)}"
                )
        memory = torch.cat([global_memory, local_memory], dim=3)
        if memory.shape[0] not in (1, features.shape[0]):
            raise ValueError(f"memory batch {memory.shape[0]} does not match features batch {features.shape[0]}")
        memory = memory.expand(features.shape[0], -1, -1, -1, -1)

        x = features
        for i, (attn, ff) in enumerate(self.layers):
            keys = getattr(self, f"key_mapping_{i}")(memory[:, 0, i])
            values = getattr(self, f"value_mapping_{i}")(memory[:, 1, i])
            x = attn(keys, values, x) + x
            x = ff(x) + x
        return x @ self.proj_out
