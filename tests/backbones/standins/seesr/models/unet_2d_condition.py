"""Stand-in for SeeSR ``models/unet_2d_condition.py``: diffusers' UNet whose ``forward`` also
takes ``image_encoder_hidden_states`` (SeeSR's RAM embeddings; appended to the text tokens here)
and records each call."""
import _standin  # noqa: F401  (puts standin_common on sys.path)
from diffusers import UNet2DConditionModel as _UNet
from standin_common import digest, record, with_extra_tokens


class UNet2DConditionModel(_UNet):
    def forward(self, sample, timestep, encoder_hidden_states, *args,
                image_encoder_hidden_states=None, **kwargs):
        record({"event": "unet", "batch": int(sample.shape[0]),
                "sample_shape": list(sample.shape),
                "encoder_hidden_states": digest(encoder_hidden_states),
                "residuals": kwargs.get("down_block_additional_residuals") is not None,
                "image_encoder_hidden_states": image_encoder_hidden_states is not None})
        hidden = with_extra_tokens(encoder_hidden_states, image_encoder_hidden_states,
                                   who="SeeSR stand-in UNet")
        return super().forward(sample, timestep, hidden, *args, **kwargs)
