"""zephir's SeeSR or PASD adapter against its stand-in, in-process, inside the backbone's
environment: a pytest module that tests/test_backbone_envs.py runs there (its name keeps a plain
``pytest`` from collecting it), and that mutmut runs in that environment
(tests/backbones/standins/mutate.py; mutmut's mutant switch reaches only its own process)::

    ZEPHIR_STANDIN=seesr ZEPHIR_STANDIN_WEIGHTS=WEIGHTS.json ZEPHIR_STANDIN_LQ=LQ.png \
        build/envs/seesr-*/bin/python -m pytest tests/backbones/standins/check_adapter.py

``WEIGHTS.json`` is the ``weights:`` section make_weights.py printed (``HF_HUB_CACHE`` set as
it says), ``LQ.png`` a 32 px image. The adapter is loaded through zephir's registry and runs
``Backbone.restore`` in the three modes with a hand-made HD pair (the embeddings of two other
prompts); the stand-in's events show what the pipeline, the ControlNet and the UNet received.
**Random-init weights: the images mean nothing.**
"""
from __future__ import annotations

import json
import os
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
    }


OTHER = {"steps": 2, "process_size": 128, "latent_tiled_size": 12, "latent_tiled_overlap": 2,
         "conditioning_scale": 0.7}
"""Settings away from the defaults, each of which must reach the pipeline call as it is."""
SENT = [160, 128]
"""The image a 31 x 24 LQ image becomes before the pipeline, worked by hand from upstream.
SeeSR (test_seesr.py): the short side raised to process_size / 4 = 32 (s = 32 / 24; int(31 s) =
41 by 32), x4 = 164 x 128, to multiples of 8: 160 x 128. PASD (test_pasd.py): x4 = 124 x 96,
the short side resized to process_size = 128 (int(128 * 124 / 96) = 165 by 128), to multiples
of 8: 160 x 128."""


EDGE_LQ = (40, 8)
"""(w, h) of the LQ image for SeeSR's short-side rule, with process_size 66 at x4 (66 // 4 =
16; 66 / 4 = 16.5): only the height is short, so s = 16 / 8 = 2 (test_seesr.py's floor
division), 80 x 16, x4: 320 x 64 sent (multiples of 8 already); the output 4x the LQ image."""


def loading_and_edges(name: str, weights_file: str, lq_file: str) -> dict:
    """The refusals' words (a folder that is not the checkout; another diffusers, its version
    read as 0.42.0), the dtype setting and the device reaching every part ("meta" stands in
    for a GPU: the parts can live there, nothing runs), conditioning of another dtype cast to
    the pipeline's, and for SeeSR the prompt's default and the short-side rule."""
    import importlib.metadata
    import tempfile
    from unittest import mock

    from PIL import Image

    from zephir import io as zio
    from zephir.backbones import load

    sys.path.insert(0, str(HERE))
    import standin_common as sc

    weights = json.loads(Path(weights_file).read_text())
    got = {}
    with tempfile.TemporaryDirectory() as elsewhere:
        Path(elsewhere, "README.md").write_text("another project\n")
        try:
            load(name, SETTINGS[name], {**weights, f"{name}_repo": elsewhere}, device="cpu")
        except FileNotFoundError as err:
            got["not_a_checkout"] = str(err).replace(str(Path(elsewhere).resolve()), "FOLDER")
    real = importlib.metadata.version
    with mock.patch("importlib.metadata.version",
                    side_effect=lambda dist: "0.42.0" if dist == "diffusers" else real(dist)):
        try:
            load(name, SETTINGS[name], weights, device="cpu")
        except RuntimeError as err:
            got["other_diffusers"] = str(err)

    meta = load(name, {**SETTINGS[name], "dtype": "bfloat16"}, weights, device="meta")
    parts = [meta.pipe.text_encoder, meta.pipe.vae, meta.pipe.unet, meta.pipe.controlnet]
    got["meta"] = {"device": str(meta.device), "parts": sorted(
        {f"{p.device.type} {p.dtype}" for m in parts for p in m.parameters()})}
    if name == "seesr":
        got["meta"]["tagger"] = sorted({p.device.type for p in meta.tagger.parameters()})

    backbone = load(name, SETTINGS[name], weights, device="cpu")
    lq = zio.load_image(lq_file).pixels
    positive, negative = backbone.compose_prompts(lq, "a cat")
    cond = backbone.encode_pair(negative, positive)
    outs = []
    for rows in (cond, cond.to(dtype=torch.float64)):
        with torch.random.fork_rng(devices=[]):  # _sample alone: restore's seeding left out
            torch.manual_seed(0)
            outs.append(backbone._sample(lq, rows, steps=1, scale=3.0,
                                         generator=torch.Generator().manual_seed(0)))
    got["cast"] = bool(np.array_equal(*outs))
    if name == "seesr":
        got["default_prompt"] = list(backbone.compose_prompts(lq))
        got["tags"] = backbone.tags(lq)
        edge = load(name, {**SETTINGS[name], "steps": 1, "process_size": 66}, weights,
                    device="cpu")
        small = np.asarray(Image.fromarray(lq).resize(EDGE_LQ, Image.BICUBIC))
        start = len(sc.EVENTS)
        out = edge.restore(small, prompt="a cat", negative_prompt="blur", seed=0)
        call = next(e for e in sc.EVENTS[start:] if e["event"] == "seesr.__call__")
        got["edge"] = {"sent": call["image_size"], "output_shape": list(out.shape)}
    return got


def _channel_stats(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = img.reshape(-1, 3).astype(np.float64)
    return x.mean(0), x.std(0)


def _block_means(img: np.ndarray, block: int = 8) -> np.ndarray:
    h, w = img.shape[0] // block * block, img.shape[1] // block * block
    x = img[:h, :w].astype(np.float64).reshape(h // block, block, w // block, block, 3)
    return x.mean((1, 3)).ravel()


def settings_reach_the_pipeline(name: str, weights_file: str, lq_file: str) -> dict:
    """Load the adapter with :data:`OTHER` (and, for SeeSR, each colour fix and start point),
    restore a 31 x 24 LQ image with guidance 3, and return what the pipeline received and the
    statistics of the outputs, with the references computed here another way."""
    from PIL import Image

    from zephir import io as zio
    from zephir.backbones import load

    sys.path.insert(0, str(HERE))
    import standin_common as sc

    weights = json.loads(Path(weights_file).read_text())
    lq = np.ascontiguousarray(zio.load_image(lq_file).pixels[:24, :31])  # 24 x 31 (h x w)
    # the LQ image as the pipeline gets it (PIL bicubic, as the adapters resize): the colour
    # fixes take their reference from it
    sent = np.asarray(Image.fromarray(lq).resize(tuple(SENT), Image.BICUBIC))
    got = {"sent_stats": [v.tolist() for v in _channel_stats(sent)]}
    fixes = ("adain", "wavelet", "none") if name == "seesr" else ("wavelet",)
    for fix in fixes:
        settings = dict(OTHER)
        if name == "seesr":
            settings.update(align_method=fix, start_point="noise" if fix == "none" else "lr")
        else:
            settings.update(init_latent_with_noise=True)
        backbone = load(name, settings, weights, device="cpu")
        parts = [backbone.pipe.text_encoder, backbone.pipe.vae, backbone.pipe.unet,
                 backbone.pipe.controlnet]
        start = len(sc.EVENTS)
        out = backbone.restore(lq, prompt="a cat", negative_prompt="blur", seed=0, scale=3.0)
        call = next(e for e in sc.EVENTS[start:] if e["event"] == f"{name}.__call__")
        back = np.asarray(Image.fromarray(out).resize(tuple(SENT), Image.BICUBIC))
        got[fix] = {"output_shape": list(out.shape), "call": call,
                    "frozen": not any(p.requires_grad for m in parts for p in m.parameters()),
                    "feature_extractor": type(backbone.pipe.feature_extractor).__name__,
                    "requires_safety_checker": backbone.pipe.config.requires_safety_checker,
                    "progress_bar": dict(backbone.pipe._progress_bar_config),
                    "scale_factor": backbone.scale_factor,
                    "weights_named": all(os.path.samefile(backbone.weights[k], weights[k])
                                         for k in weights if k in backbone.weights),
                    "weight_keys": sorted(backbone.weights),
                    "stats": [v.tolist() for v in _channel_stats(back)],
                    "block_corr": float(np.corrcoef(_block_means(back),
                                                    _block_means(sent))[0, 1])}
        if name == "seesr":
            # DAPE's input as test_seesr.py builds it (Resize((384, 384)) on the [0, 1] tensor,
            # then ImageNet's channel statistics), here with torch's own interpolation
            x = torch.from_numpy(lq).permute(2, 0, 1)[None].float() / 255
            x = torch.nn.functional.interpolate(x, size=(384, 384), mode="bilinear",
                                                align_corners=False)
            mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
            with torch.no_grad():
                ref = backbone.tagger.generate_image_embeds((x - mean) / std)
            got[fix]["ram_reference"] = sc.digest(ref)
    if name == "seesr":  # once: these do not depend on the colour fix
        # the tagger: RAM's weights with DAPE's laid over them (ram_lora.py 316-334)
        ram_state = torch.load(weights["seesr_ram"], map_location="cpu")
        dape_state = torch.load(weights["seesr_dape"], map_location="cpu")
        state = backbone.tagger.state_dict()
        got["tagger"] = {
            "image_size": backbone.tagger.image_size, "vit": backbone.tagger.vit,
            "weights": all(torch.equal(state[k], dape_state.get(k, ram_state[k]))
                           for k in ram_state),
            "dape_differs": any(not torch.equal(dape_state[k], ram_state[k])
                                for k in dape_state)}
        # the prompt: an explicit negative wins; without DAPE tags the parts comma-joined
        got["prompts_given_negative"] = backbone.compose_prompts(lq, "a cat", "ugly")[1]
        untagged = load(name, {**settings, "dape_tags": False}, weights, device="cpu")
        got["prompts_untagged"] = list(untagged.compose_prompts(lq, "a cat"))
    return got


VARIABLES = ("ZEPHIR_STANDIN", "ZEPHIR_STANDIN_WEIGHTS", "ZEPHIR_STANDIN_LQ")


def test_the_adapter_plumbing_against_the_stand_in():
    """Rows, tiles, the wrapper installed for cfpg and removed after (UNet back, ControlNet
    hooks gone), CFPG's four predictions as one call of the ControlNet and one of the UNet per
    step and tile on ``[t-; t+; h-; h+]`` (issue 23, item 4), w = 0 and ratio 0 equal to the
    baseline bit for bit, the seeds. One test, so that mutmut runs every assertion on every
    mutant it reaches."""
    missing = [v for v in VARIABLES if not os.environ.get(v)]
    assert not missing, f"set {', '.join(missing)} (this module's docstring says how)"
    name = os.environ["ZEPHIR_STANDIN"]
    got = main(name, os.environ["ZEPHIR_STANDIN_WEIGHTS"], os.environ["ZEPHIR_STANDIN_LQ"])
    assert got["random_init"] is True
    assert got["output_shape"] == [128, 128, 3] and got["lq_shape"] == [32, 32, 3]
    for key in ("prompt_embeds_is_positive_row", "negative_prompt_embeds_is_negative_row",
                "rows_differ", "nets_see_the_text_pair", "unet_restored",
                "cfpg_unet_sees_hd_rows", "cfpg_controlnet_sees_hd_rows",
                "cfpg_one_batched_call", "controlnet_hooks_removed", "cfpg_differs",
                "cfpg_w0_is_baseline", "cfg_prompt_embeds_are_mixed", "cfg_ratio0_is_baseline",
                "cfg_differs", "modes_share_generator", "modes_share_start_latents",
                "posterior", "same_seed_same_bytes", "other_seed_other_noise"):
        assert got[key] is True, key
    assert got["controlnet_then_unet"] == ["controlnet", "unet"] * 2
    assert got["tiles_per_step"] == 9 and got["latent_shape"] == [16, 16]
    assert got["tile_shape"] == [2, 4, 8, 8]  # [negative; positive] rows, one 8 x 8 tile
    assert got["unet_during_baseline"] == "UNet2DConditionModel"
    assert got["unet_during_cfpg"] == "CFPGDenoiser"
    assert got["generator_type"] == "Generator" and list(got["tiled_vae"]) == [1024, 224]
    if name == "seesr":  # DAPE's tags, then the prompt, then the added prompt
        assert got["prompts"][0].endswith(", a cat,clean, high-resolution, 8k")

    other = settings_reach_the_pipeline(name, os.environ["ZEPHIR_STANDIN_WEIGHTS"],
                                        os.environ["ZEPHIR_STANDIN_LQ"])
    for fix in ("adain", "wavelet", "none") if name == "seesr" else ("wavelet",):
        run, call = other[fix], other[fix]["call"]
        assert run["output_shape"] == [96, 124, 3], fix  # 4x the LQ image, not the sent size
        assert call["image_size"] == SENT and call["steps"] == 2, fix
        assert call["guidance_scale"] == 3.0 and call["conditioning_scale"] == 0.7, fix
        assert call["tile"] == [12, 2], fix
        assert run["frozen"] and run["feature_extractor"] == "CLIPImageProcessor", fix
        assert run["requires_safety_checker"] is False, fix
        assert run["progress_bar"] == {"disable": True} and run["scale_factor"] == 4, fix
        keys = {"seesr": ["sd2_base", "seesr", "seesr_bert", "seesr_dape", "seesr_ram",
                          "seesr_repo"], "pasd": ["pasd", "pasd_repo", "sd15"]}[name]
        assert run["weight_keys"] == keys and run["weights_named"], (fix, run["weight_keys"])
        if name == "seesr":
            assert [call["width"], call["height"]] == SENT, fix
            assert call["ram_shape"] == [1, 1 + (384 // 32) ** 2, 32], fix
            assert call["ram_states"] == run["ram_reference"], fix
            assert call["start_point"] == ("noise" if fix == "none" else "lr"), fix
            assert ("posterior" in call) == (fix != "none"), fix
        else:
            assert call["init_latent_with_noise"] is True
    if name == "seesr":
        assert other["tagger"] == {"image_size": 384, "vit": "swin_l", "weights": True,
                                   "dape_differs": True}
        assert other["prompts_given_negative"] == "ugly"
        assert other["prompts_untagged"] == ["a cat, clean, high-resolution, 8k",
                                             "dotted, noise, blur, lowres, smooth"]
    sent_mean, sent_std = (np.array(v) for v in other["sent_stats"])
    for fix in ("adain", "wavelet") if name == "seesr" else ("wavelet",):
        mean, std = (np.array(v) for v in other[fix]["stats"])
        assert np.abs(mean - sent_mean).max() < 4, (fix, mean, sent_mean)  # both fix the means
    if name == "seesr":
        _, std = (np.array(v) for v in other["adain"]["stats"])
        # AdaIN takes the stds too (at the sent size; resizing back to 4x smooths them a little)
        assert (np.abs(std - sent_std) < 0.25 * sent_std).all(), (std, sent_std)
        mean, _ = (np.array(v) for v in other["none"]["stats"])
        assert np.abs(mean - sent_mean).max() > 10, (mean, sent_mean)  # the raw output's aren't
    # the wavelet fix keeps the LQ image's low frequencies: 8 px block means follow them
    assert other["wavelet"]["block_corr"] > 0.5, other["wavelet"]["block_corr"]

    edges = loading_and_edges(name, os.environ["ZEPHIR_STANDIN_WEIGHTS"],
                              os.environ["ZEPHIR_STANDIN_LQ"])
    probe = {"seesr": "pipelines/pipeline_seesr.py", "pasd": "pasd/pipelines/pipeline_pasd.py"}
    assert edges["not_a_checkout"] == (f"backbone {name}: FOLDER is not a checkout of its code "
                                       f"({probe[name]} is missing)")
    series = {"seesr": "0.21", "pasd": "0.29"}[name]
    env = f"workflow/envs/{name}.yaml"
    assert edges["other_diffusers"] == (
        f"backbone {name}: its upstream code needs diffusers {series}.x, found 0.42.0; run it in "
        f"its own environment ({env}: `conda env create -f {env}`, or snakemake "
        "--software-deployment-method conda), see docs/restoration.md")
    assert edges["meta"]["device"] == "meta"
    assert edges["meta"]["parts"] == ["meta torch.bfloat16"], edges["meta"]
    assert edges["cast"] is True  # float64 rows give the float32 result
    if name == "seesr":
        assert edges["meta"]["tagger"] == ["meta"]
        assert edges["default_prompt"] == [f"{edges['tags']}, ,clean, high-resolution, 8k",
                                           "dotted, noise, blur, lowres, smooth"]
        assert edges["edge"] == {"sent": [320, 64], "output_shape": [32, 160, 3]}, edges["edge"]
