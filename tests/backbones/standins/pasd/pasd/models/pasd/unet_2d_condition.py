"""Stand-in for PASD ``pasd/models/pasd/unet_2d_condition.py``: diffusers' UNet, recording
each call."""
import _standin  # noqa: F401
from diffusers import UNet2DConditionModel as _UNet
from standin_common import digest, record


class UNet2DConditionModel(_UNet):
    def forward(self, sample, timestep, encoder_hidden_states, *args, **kwargs):
        record({"event": "unet", "batch": int(sample.shape[0]),
                "sample_shape": list(sample.shape),
                "encoder_hidden_states": digest(encoder_hidden_states),
                "residuals": kwargs.get("down_block_additional_residuals") is not None})
        return super().forward(sample, timestep, encoder_hidden_states, *args, **kwargs)
