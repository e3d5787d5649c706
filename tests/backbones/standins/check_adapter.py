"""Run zephir's SeeSR or PASD adapter against its stand-in, inside the backbone's environment,
and print what tests/test_backbone_envs.py asserts on (one JSON object).

    python tests/backbones/standins/check_adapter.py seesr WEIGHTS.json LQ.png

``WEIGHTS.json`` is the ``weights:`` section make_weights.py printed. The adapter is loaded
through zephir's registry and runs ``Backbone.restore`` in the three modes with a hand-made
HD pair (the embeddings of two other prompts); the stand-in's events show what the pipeline, the
ControlNet and the UNet received. **Random-init weights: the images mean nothing.**
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SETTINGS = {
    "seesr": {"steps": 2, "process_size": 128, "latent_tiled_size": 8,
              "latent_tiled_overlap": 4},
    "pasd": {"steps": 2, "process_size": 128, "latent_tiled_size": 8, "latent_tiled_overlap": 4},
}
"""Small sizes: a 32 px LQ image gives a 128 px output, 16 x 16 latents in 3 x 3 tiles of 8."""


def main(name: str, weights_file: str, lq_file: str) -> dict:
    from zephir import io as zio
    from zephir.backbones import load

    sys.path.insert(0, str(HERE))
    import standin_common as sc

    weights = json.loads(Path(weights_file).read_text())
    backbone = load(name, SETTINGS[name], weights, device="cpu")
    lq = zio.load_image(lq_file).pixels
    positive, negative = backbone.compose_prompts(lq, "a cat")
    text = backbone.encode_pair(negative, positive)
    hd = backbone.encode_pair("heavy blur, noise", "a sharp photo of a cat")
    unet = backbone.pipe.unet

    def run(mode, seed=0, **kw):
        start = len(sc.EVENTS)
        out = backbone.restore(lq, prompt=positive, negative_prompt=negative, mode=mode,
                               hd_pair=None if mode == "baseline" else hd, seed=seed, **kw)
        return out, sc.EVENTS[start:]

    def call(events):
        return next(e for e in events if e["event"].endswith(".__call__"))

    base, ev_base = run("baseline")
    torch.manual_seed(1234)  # the global RNG, disturbed: SeeSR's posterior draw must not see it
    again, _ = run("baseline")
    cfpg, ev_cfpg = run("cfpg", w_par=1.0, w_orth=0.6)
    cfpg0, _ = run("cfpg", w_par=0.0, w_orth=0.0)
    cfg, ev_cfg = run("cfg", cfg_ratio=0.5)
    cfg0, _ = run("cfg", cfg_ratio=0.0)
    other, ev_other = run("baseline", seed=1)
    mixed = text.mix(hd, (0.5, 0.5))

    nets = [e for e in ev_base if e["event"] in ("unet", "controlnet")]
    pair = sc.digest(text.hidden)
    hd_rows = sc.digest(hd.hidden)

    def sees_hd(net):  # some call of ``net`` in the cfpg run had both HD rows in its batch
        return any(set(hd_rows) <= set(e["encoder_hidden_states"])
                   for e in ev_cfpg if e["event"] == net)

    def batched(net):  # per step and tile one call of ``net`` on [t-; t+; h-; h+] (item 4)
        calls = [e for e in ev_cfpg if e["event"] == net]
        plain = [e for e in ev_base if e["event"] == net]
        return len(calls) == len(plain) and all(
            e["encoder_hidden_states"] == pair + hd_rows for e in calls)

    hooks = backbone.pipe.controlnet
    latent = [s // 8 for s in call(ev_base)["image_size"][::-1]]
    return {
        "random_init": backbone.random_init and backbone.record()["random_init"],
        "output_shape": list(base.shape), "lq_shape": list(lq.shape),
        "prompts": [positive, negative],
        # the adapter hands the pipeline the [negative, positive] pair, row by row
        "prompt_embeds_is_positive_row": call(ev_base)["prompt_embeds"] == pair[1:],
        "negative_prompt_embeds_is_negative_row": call(ev_base)["negative_prompt_embeds"]
        == pair[:1],
        "rows_differ": pair[0] != pair[1],
        # per step and tile: the ControlNet, then the UNet, both on [negative; positive]
        "nets_see_the_text_pair": all(e["encoder_hidden_states"] == pair for e in nets),
        "controlnet_then_unet": [e["event"] for e in nets[:4]],
        "tiles_per_step": sum(e["event"] == "unet" for e in nets) // SETTINGS[name]["steps"],
        "tile_shape": nets[0]["sample_shape"], "latent_shape": latent,
        "unet_during_baseline": call(ev_base)["unet"],
        "unet_during_cfpg": call(ev_cfpg)["unet"],
        "unet_restored": backbone.pipe.unet is unet,
        "cfpg_unet_sees_hd_rows": sees_hd("unet"),
        "cfpg_controlnet_sees_hd_rows": sees_hd("controlnet"),
        "cfpg_one_batched_call": batched("unet") and batched("controlnet"),
        "controlnet_hooks_removed": not (hooks._forward_hooks or hooks._forward_pre_hooks),
        "cfpg_differs": not np.array_equal(cfpg, base),
        "cfpg_w0_is_baseline": np.array_equal(cfpg0, base),
        "cfg_prompt_embeds_are_mixed": call(ev_cfg)["prompt_embeds"]
        == sc.digest(mixed.hidden[1:]),
        "cfg_ratio0_is_baseline": np.array_equal(cfg0, base),
        "cfg_differs": not np.array_equal(cfg, base),
        # seeding: a CPU generator made from the seed; the modes start from the same noise
        "generator_type": call(ev_base)["generator_type"],
        "modes_share_generator": len({call(e)["generator"] for e in (ev_base, ev_cfpg, ev_cfg)})
        == 1,
        "modes_share_start_latents": call(ev_base)["start_latents"]
        == call(ev_cfpg)["start_latents"] == call(ev_cfg)["start_latents"],
        "posterior": call(ev_base).get("posterior") is not None,
        "same_seed_same_bytes": np.array_equal(base, again),
        "other_seed_other_noise": call(ev_other)["generator"] != call(ev_base)["generator"]
        and not np.array_equal(other, base),
        "tiled_vae": call(ev_base)["vae_tiles"],
        "forbidden_modules": sorted(  # as tests/test_backbone_envs.py's forbidden()
            m for m in sys.modules
            if m.startswith(("open_clip", "zephir.hdclip", "zephir.training", "zephir.degrade."))
            and m not in ("zephir.degrade.levels", "zephir.hdclip.config")),
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
