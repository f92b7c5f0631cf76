"""SketchDiT: the line-art control branch that steers the CogVideoX base model.

It is a short CogVideoX transformer of its own (patch, time and ofs embeddings,
blocks with the base's block config) whose last block's vision tokens pass a
zero-initialised linear, so a fresh module leaves the base model unchanged.
Submodule names follow the released `control_module.safetensors`.
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import CogVideoXPatchEmbed, TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXBlock
from torch import nn


class SketchDiT(ModelMixin, ConfigMixin):
    """Sketch + reference latents in, one control feature per base vision token out.

    Defaults are the release's: 6 blocks of CogVideoX1.5-5B-I2V (48 heads x 64),
    32 input channels (sketch latents beside the reference-image latents).
    """

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 48,
        attention_head_dim: int = 64,
        in_channels: int = 32,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = 512,
        text_embed_dim: int = 4096,
        num_layers: int = 6,
        attention_bias: bool = True,
        sample_width: int = 300,
        sample_height: int = 300,
        sample_frames: int = 81,
        patch_size: int = 2,
        patch_size_t: int | None = 2,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        patch_bias: bool = False,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"SketchDiT needs at least one block, got num_layers={num_layers}")
        inner_dim = num_attention_heads * attention_head_dim

        # Rotary positions come from the base model's pipeline, so no absolute embedding here.
        self.patch_embed = CogVideoXPatchEmbed(
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            in_channels=in_channels,
            embed_dim=inner_dim,
            text_embed_dim=text_embed_dim,
            bias=patch_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_positional_embeddings=False,
            use_learned_positional_embeddings=False,
        )
        self.time_proj = Timesteps(inner_dim, flip_sin_to_cos, freq_shift)
        self.time_embedding = TimestepEmbedding(inner_dim, time_embed_dim, timestep_activation_fn)
        self.ofs_proj = None
        self.ofs_embedding = None
        if ofs_embed_dim:
            self.ofs_proj = Timesteps(ofs_embed_dim, flip_sin_to_cos, freq_shift)
            self.ofs_embedding = TimestepEmbedding(ofs_embed_dim, ofs_embed_dim, timestep_activation_fn)
        self.transformer_blocks = nn.ModuleList(
            CogVideoXBlock(
                dim=inner_dim,
                num_attention_heads=num_attention_heads,
                attention_head_dim=attention_head_dim,
                time_embed_dim=time_embed_dim,
                activation_fn=activation_fn,
                attention_bias=attention_bias,
                norm_elementwise_affine=norm_elementwise_affine,
                norm_eps=norm_eps,
            )
            for _ in range(num_layers)
        )
        self.zero_conv = nn.Linear(inner_dim, inner_dim, bias=False)
        nn.init.zeros_(self.zero_conv.weight)

    @classmethod
    def config_from_base(cls, base_config, **overrides) -> dict:
        """The SketchDiT config matching a base CogVideoX transformer config (the release's rule)."""
        keys = (
            "num_attention_heads", "attention_head_dim", "in_channels", "flip_sin_to_cos", "freq_shift",
            "time_embed_dim", "ofs_embed_dim", "text_embed_dim", "attention_bias", "sample_width",
            "sample_height", "sample_frames", "patch_size", "patch_size_t", "temporal_compression_ratio",
            "max_text_seq_length", "activation_fn", "timestep_activation_fn", "norm_elementwise_affine",
            "norm_eps", "spatial_interpolation_scale", "temporal_interpolation_scale", "patch_bias",
        )
        config = {k: base_config[k] for k in keys if k in base_config}
        config["num_layers"] = 6
        config.update(overrides)
        return config

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        ofs: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(B, F, C, H, W) latents + (B, L, text_dim) prompt -> (B, vision tokens, inner_dim)."""
        if self.ofs_embedding is not None and ofs is None:
            raise ValueError("this SketchDiT has an ofs embedding (CogVideoX1.5): pass `ofs`")

        # 1. Time (and ofs) embedding
        emb = self.time_embedding(self.time_proj(timestep).to(hidden_states.dtype))
        if self.ofs_embedding is not None:
            emb = emb + self.ofs_embedding(self.ofs_proj(ofs).to(hidden_states.dtype))

        # 2. Patch embedding; text tokens lead the sequence
        tokens = self.patch_embed(encoder_hidden_states, hidden_states)
        text_len = encoder_hidden_states.shape[1]
        text, vision = tokens[:, :text_len], tokens[:, text_len:]

        # 3. Blocks
        for block in self.transformer_blocks:
            vision, text = block(
                hidden_states=vision, encoder_hidden_states=text, temb=emb, image_rotary_emb=image_rotary_emb
            )

        # 4. Zero-initialised output projection
        return self.zero_conv(vision)
