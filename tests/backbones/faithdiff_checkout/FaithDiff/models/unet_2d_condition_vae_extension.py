"""Stand-in for FaithDiff's UNet module: ``UNet2DConditionModel`` (diffusers' SDXL-style UNet at
tiny size) with ``denoise_encoder``, ``load_additional_layers`` and upstream's forward keywords
(``input_embedding``, ``add_sample``); ``Encoder`` is FaithDiff's denoise encoder (diffusers'
VAE encoder at tiny size) with its tiling switch and tile settings."""
import torch
from diffusers import UNet2DConditionModel as _UNet
from diffusers.models.autoencoders.vae import Encoder as _Encoder

RECORD = {"from_pretrained": [], "layers": [], "state_dict": [], "forward": [], "encoder": []}

TEXT_WIDTH = 32
"""Cross-attention width: SDXL's two text encoders' widths joined (16 + 16)."""
POOLED = 32
TINY = {"sample_size": 16, "in_channels": 4, "out_channels": 4, "block_out_channels": (16, 32),
        "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D"),
        "up_block_types": ("CrossAttnUpBlock2D", "UpBlock2D"), "layers_per_block": 1,
        "cross_attention_dim": TEXT_WIDTH, "attention_head_dim": 4, "norm_num_groups": 8,
        "addition_embed_type": "text_time", "addition_time_embed_dim": 4,
        "projection_class_embeddings_input_dim": 6 * 4 + POOLED}


class Encoder(_Encoder):
    """FaithDiff's encoder of the LQ image into the UNet's input embedding."""

    def __init__(self):
        super().__init__(in_channels=3, out_channels=4, block_out_channels=(8, 8),
                         down_block_types=("DownEncoderBlock2D",) * 2, layers_per_block=1,
                         norm_num_groups=4, double_z=False)
        self.tile_sample_min_size = 1024
        self.tile_latent_min_size = 128
        self.tile_overlap_factor = 0.25
        self.use_tiling = False

    def enable_tiling(self):
        self.use_tiling = True

    def disable_tiling(self):
        self.use_tiling = False

    def forward(self, sample):
        RECORD["encoder"].append({"tiling": self.use_tiling, "input": sample.detach().clone(),
                                  "tile": (self.tile_sample_min_size, self.tile_overlap_factor)})
        return super().forward(sample)


class UNet2DConditionModel(_UNet):
    """Built at tiny size by ``from_pretrained``, whatever the folder (random init, seed 0)."""

    @classmethod
    def from_pretrained(cls, path, **kwargs):
        RECORD["from_pretrained"].append((str(path), dict(kwargs)))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            unet = cls(**TINY)
        unet.denoise_encoder = None
        return unet

    def load_additional_layers(self, dtype=torch.float16, channel=512, weight_path=None):
        RECORD["layers"].append({"dtype": dtype, "channel": channel, "weight_path": weight_path})
        if getattr(self, "denoise_encoder", None) is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(1)
                self.denoise_encoder = Encoder()
            self.denoise_encoder.dtype = dtype  # a plain attribute, as upstream sets it
        if weight_path is not None:
            self.load_state_dict(torch.load(weight_path, weights_only=True), strict=True)
        self.to(dtype=dtype)

    def load_state_dict(self, state_dict, strict=True):
        RECORD["state_dict"].append(sorted(state_dict))
        return super().load_state_dict(state_dict, strict=strict)

    def forward(self, sample, timestep, encoder_hidden_states, class_labels=None,
                timestep_cond=None, attention_mask=None, cross_attention_kwargs=None,
                added_cond_kwargs=None, down_block_additional_residuals=None,
                mid_block_additional_residual=None, down_intrablock_additional_residuals=None,
                encoder_attention_mask=None, input_embedding=None, add_sample=True,
                return_dict=True, use_condition_embedding=True):
        RECORD["forward"].append({"encoder_hidden_states": encoder_hidden_states.clone(),
                                  "input_embedding": input_embedding, "add_sample": add_sample,
                                  "added_cond_kwargs": added_cond_kwargs})
        if add_sample and input_embedding is not None:
            sample = sample + 0.1 * input_embedding
        return super().forward(sample, timestep, encoder_hidden_states,
                               timestep_cond=timestep_cond,
                               cross_attention_kwargs=cross_attention_kwargs,
                               added_cond_kwargs=added_cond_kwargs, return_dict=return_dict)
