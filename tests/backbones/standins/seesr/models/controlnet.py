"""Stand-in for SeeSR ``models/controlnet.py``: diffusers' ControlNet whose ``forward`` also
takes ``image_encoder_hidden_states`` (appended to the text tokens) and records each call."""
import _standin  # noqa: F401
from diffusers import ControlNetModel as _ControlNet
from standin_common import digest, record, with_extra_tokens


class ControlNetModel(_ControlNet):
    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, *args,
                image_encoder_hidden_states=None, vae_encode_condition_hidden_states=None,
                **kwargs):
        record({"event": "controlnet", "batch": int(sample.shape[0]),
                "sample_shape": list(sample.shape),
                "encoder_hidden_states": digest(encoder_hidden_states),
                "image_encoder_hidden_states": image_encoder_hidden_states is not None})
        hidden = with_extra_tokens(encoder_hidden_states, image_encoder_hidden_states,
                                   who="SeeSR stand-in ControlNet")
        return super().forward(sample, timestep, hidden, controlnet_cond, *args, **kwargs)
