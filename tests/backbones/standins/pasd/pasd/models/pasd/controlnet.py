"""Stand-in for PASD ``pasd/models/pasd/controlnet.py``: diffusers' ControlNet returning
``(rgbs, down_block_res_samples, mid_block_res_sample)`` as PASD's does with
``return_dict=False`` (pipeline_pasd.py 1018); the stand-in's ``rgbs`` is an empty list."""
import _standin  # noqa: F401
from diffusers import ControlNetModel as _ControlNet
from standin_common import digest, record


class ControlNetModel(_ControlNet):
    def forward(self, sample, timestep, encoder_hidden_states, controlnet_cond, *args,
                return_dict=True, **kwargs):
        record({"event": "controlnet", "batch": int(sample.shape[0]),
                "sample_shape": list(sample.shape),
                "encoder_hidden_states": digest(encoder_hidden_states)})
        down, mid = super().forward(sample, timestep, encoder_hidden_states, controlnet_cond,
                                    *args, return_dict=False, **kwargs)
        return ([], down, mid) if not return_dict else (down, mid)
