"""The one weights resolver: where every pretrained file a config needs lies on disk.

zephir never downloads a weight. Every file is named here: its config key, its local path,
what it is, what loads it, and how to fetch it where there is internet. A missing weight is
found by a ``stat`` (never a network call), so that with the network unreachable it fails in
well under a second, with a message that names the key, the file and how to get it.

Config section (``weights:``), a flat mapping of key -> path; every key is optional and the
value replaces the default shown (paths are relative to the working directory)::

    weights:
      # HD-CLIP and the estimation baselines
      clip: data/weights/clip/ViT-B-32.pt         # OpenAI CLIP ViT-B/32, HD-CLIP's start point
      daclip: data/weights/daclip/daclip_ViT-B-32.pt   # DA-CLIP's released checkpoint
      # Restoration backbones (diffusers folders unless said otherwise)
      sd_x4_upscaler: data/weights/sd/stable-diffusion-x4-upscaler
      sdxl: data/weights/faithdiff/RealVisXL_V4.0          # FaithDiff's SDXL base
      sdxl_vae_fp16: data/weights/faithdiff/sdxl-vae-fp16-fix  # FaithDiff's fp16-safe VAE
      faithdiff: data/weights/faithdiff/FaithDiff.bin      # FaithDiff's extra UNet layers
      faithdiff_repo: data/repos/FaithDiff                  # git checkout of FaithDiff's code
      sd2_base: data/weights/seesr/stable-diffusion-2-base  # SeeSR's SD-2 base
      seesr_repo: data/repos/SeeSR                          # git checkout of SeeSR's code
      seesr: data/weights/seesr/seesr                       # SeeSR's unet/ + controlnet/
      seesr_dape: data/weights/seesr/DAPE.pth               # SeeSR's prompt extractor
      seesr_ram: data/weights/seesr/ram_swin_large_14m.pth  # RAM, which DAPE fine-tunes
      sd15: data/weights/pasd/stable-diffusion-v1-5         # PASD's SD-1.5 base
      pasd_repo: data/repos/PASD                            # git checkout of PASD's code
      pasd: data/weights/pasd/checkpoint-100000             # PASD's unet/ + controlnet/
      # Image quality metrics (pyiqa); files pyiqa would otherwise download
      torch_home: data/weights/torch   # TORCH_HOME for torchvision's AlexNet (LPIPS trunk)
      lpips: data/weights/torch/hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth
      musiq: data/weights/torch/hub/pyiqa/musiq_koniq_ckpt-e95806b9.pth
      niqe: data/weights/torch/hub/pyiqa/niqe_modelparameters.mat
      brisque: data/weights/torch/hub/pyiqa/brisque_svm_weights.pth

:data:`DEFAULTS` is that section. Three entries of the registry have no key of their own,
because the library that loads them fixes the place:

- ``lpips_alexnet``: torchvision's ImageNet AlexNet, which pyiqa's LPIPS always builds
  (``models.alexnet(weights='IMAGENET1K_V1')``), read from
  ``<torch_home>/hub/checkpoints/alexnet-owt-7be5be79.pth``; zephir points ``torch.hub`` at
  ``<torch_home>/hub`` while it builds LPIPS.
- ``qalign`` and ``seesr_bert``: Hugging Face repositories (``q-future/one-align``,
  ``bert-base-uncased``) loaded by repository id, so they live in the Hugging Face cache
  (``HF_HUB_CACHE``, else ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``, as
  ``huggingface_hub`` reads it when first imported: set those variables before starting).

Beyond the section, :func:`config_weights` lists the CLIP weights files the config's estimators
load where the config names a file of its own (``hdclip.model.checkpoint``,
``estimation.daclip_model.checkpoint``, ``estimation.daclip_weights``): ``zephir weights check``
shows them too (an open_clip pretrained tag is downloaded by open_clip, not checked here).

The default pyiqa paths sit under ``torch_home/hub/pyiqa``, the very place pyiqa's own cache
takes with ``TORCH_HOME=data/weights/torch``, so that plain pyiqa finds the same files.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zephir.schema import default, keys

#: The ``weights:`` section's defaults, from the config schema (the one source of defaults).
DEFAULTS: dict = {key: default(f"weights.{key}") for key in keys("weights")}

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
_PYIQA_HF = "https://huggingface.co/chaofengc/IQA-PyTorch-Weights/resolve/main"
_SEESR_LINKS = ("the Google Drive / OneDrive links of SeeSR's README "
                "(github.com/cswry/SeeSR, 'Download the SeeSR and DAPE models')")


@dataclass(frozen=True)
class Weight:
    """One pretrained file (or folder) a config may need.

    ``kind`` is ``file``, ``folder`` (a diffusers folder or a code checkout) or ``hf-cache``
    (a Hugging Face repository found in the Hugging Face cache). ``setting`` is what decides
    the path: a config key (``weights.<name>``) or the environment.
    """

    name: str
    path: Path
    kind: str
    what: str
    used_by: str
    source: str
    setting: str

    def present(self) -> bool:
        """Whether the weight is on disk (a stat, never a network call)."""
        if self.kind == "file":
            return self.path.is_file()
        if self.kind == "folder":
            return self.path.is_dir() and any(self.path.iterdir())
        return any(s.is_dir() and any(s.iterdir()) for s in self.path.glob("snapshots/*"))


def _hf(repo: str, *files: str, dest: str, kind: str = "") -> str:
    """The `hf download` command (``huggingface-cli download`` before huggingface_hub 1.0)."""
    words = ["hf download", repo, *([f"--repo-type {kind}"] if kind else []), *files,
             f"--local-dir {dest}"]
    return " ".join(words)


def _pyiqa_source(filename: str, path: str) -> str:
    return (f"{_PYIQA_HF}/{filename} (pyiqa's own download URL), e.g. "
            + _hf("chaofengc/IQA-PyTorch-Weights", filename, dest=str(Path(path).parent)))


def _hf_cache_dir(repo: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ("models--" + repo.replace("/", "--"))


def _entries(p: dict) -> list[tuple]:
    """(name, path, kind, what, used_by, source) of every weight, for the paths ``p``."""
    hub = Path(p["torch_home"]) / "hub"
    return [
        ("clip", p["clip"], "file",
         "OpenAI CLIP ViT-B/32 (open_clip tag 'openai', QuickGELU)",
         "HD-CLIP's two branches; the CLIP zero-shot baseline",
         ("wget https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82c18be"
          f"219cc2a73407c4526f58eba950af/ViT-B-32.pt -O {p['clip']} (the file open_clip fetches "
          "for create_model('ViT-B-32', pretrained='openai'))")),
        ("daclip", p["daclip"], "file",
         "DA-CLIP's released checkpoint (ViT-B/32 CLIP + degradation controller)",
         "table 2, the 'DA-CLIP (released weights)' row",
         _hf("weblzw/daclip-uir-ViT-B-32-irsde", "daclip_ViT-B-32.pt",
             dest=str(Path(p["daclip"]).parent))),
        ("sd_x4_upscaler", p["sd_x4_upscaler"], "folder",
         "Stable Diffusion x4 upscaler (diffusers folder)",
         "backbone sd_x4_upscaler",
         _hf("stabilityai/stable-diffusion-x4-upscaler", dest=p["sd_x4_upscaler"])),
        ("sdxl", p["sdxl"], "folder",
         "RealVisXL V4.0, the SDXL base FaithDiff was trained on (diffusers folder)",
         "backbone faithdiff (UNet, text encoders, scheduler)",
         _hf("SG161222/RealVisXL_V4.0", dest=p["sdxl"])),
        ("sdxl_vae_fp16", p["sdxl_vae_fp16"], "folder",
         "SDXL VAE fp16-fix (diffusers folder)", "backbone faithdiff (VAE)",
         _hf("madebyollin/sdxl-vae-fp16-fix", dest=p["sdxl_vae_fp16"])),
        ("faithdiff", p["faithdiff"], "file",
         "FaithDiff's extra UNet layers (a state dict, read as data)", "backbone faithdiff",
         _hf("jychen9811/FaithDiff", "FaithDiff.bin", dest=str(Path(p["faithdiff"]).parent))),
        ("faithdiff_repo", p["faithdiff_repo"], "folder",
         ("git checkout of FaithDiff's code (pipeline, UNet, test-script helpers), at or after "
          "commit ade5713"),
         "backbone faithdiff (own environment: diffusers 0.28)",
         f"git clone https://github.com/JyChen9811/FaithDiff {p['faithdiff_repo']}"),
        ("sd2_base", p["sd2_base"], "folder",
         "Stable Diffusion 2 base (diffusers folder) that SeeSR's UNet and ControlNet extend",
         "backbone seesr (VAE, text encoder, tokenizer, scheduler)",
         _hf("stabilityai/stable-diffusion-2-base", dest=p["sd2_base"])
         + " (SeeSR's test script reads preset/models/stable-diffusion-2-base; its README "
         "links stabilityai/stable-diffusion-2-1-base)"),
        ("seesr_repo", p["seesr_repo"], "folder",
         "git checkout of SeeSR's code (its pipeline, RAM and DAPE modules)",
         "backbone seesr (own environment: diffusers 0.21)",
         f"git clone https://github.com/cswry/SeeSR {p['seesr_repo']}"),
        ("seesr", p["seesr"], "folder",
         "SeeSR's trained UNet and ControlNet (unet/ and controlnet/)", "backbone seesr",
         _SEESR_LINKS),
        ("seesr_dape", p["seesr_dape"], "file",
         "DAPE, SeeSR's degradation-aware prompt extractor (fine-tuned RAM)", "backbone seesr",
         _SEESR_LINKS),
        ("seesr_ram", p["seesr_ram"], "file",
         "RAM (recognize-anything, Swin-L, 14M), the tagger DAPE starts from", "backbone seesr",
         _hf("xinyu1205/recognize-anything", "ram_swin_large_14m.pth",
             dest=str(Path(p["seesr_ram"]).parent), kind="space")),
        ("seesr_bert", _hf_cache_dir("bert-base-uncased"), "hf-cache",
         "bert-base-uncased tokenizer, loaded by repository id in RAM's init_tokenizer",
         "backbone seesr",
         "hf download bert-base-uncased (into the Hugging Face cache; no --local-dir)"),
        ("sd15", p["sd15"], "folder", "Stable Diffusion 1.5 (diffusers folder)",
         "backbone pasd (VAE, text encoder, tokenizer, scheduler)",
         _hf("stable-diffusion-v1-5/stable-diffusion-v1-5", dest=p["sd15"])
         + " (formerly runwayml/stable-diffusion-v1-5)"),
        ("pasd_repo", p["pasd_repo"], "folder",
         "git checkout of PASD's code (its pipeline, UNet and ControlNet classes)",
         "backbone pasd (own environment: diffusers 0.29)",
         f"git clone https://github.com/yangxy/PASD {p['pasd_repo']}"),
        ("pasd", p["pasd"], "folder",
         "PASD's trained UNet and ControlNet (unet/ and controlnet/)", "backbone pasd",
         ("the pre-trained model links of PASD's README (github.com/yangxy/PASD); test_pasd.py "
          "reads runs/pasd/checkpoint-100000")),
        ("lpips_alexnet", hub / "checkpoints" / ALEXNET_FILE, "file",
         "torchvision AlexNet ImageNet weights (IMAGENET1K_V1), LPIPS's feature trunk",
         "metric lpips (pyiqa builds models.alexnet(weights='IMAGENET1K_V1') in any case)",
         f"wget https://download.pytorch.org/models/{ALEXNET_FILE} -P {hub / 'checkpoints'}"),
        ("lpips", p["lpips"], "file",
         "LPIPS v0.1 linear layers on AlexNet (pyiqa 'lpips')", "metric lpips",
         _pyiqa_source("LPIPS_v0.1_alex-df73285e.pth", p["lpips"])),
        ("musiq", p["musiq"], "file", "MUSIQ trained on KonIQ-10k (pyiqa 'musiq')",
         "metric musiq", _pyiqa_source("musiq_koniq_ckpt-e95806b9.pth", p["musiq"])),
        ("niqe", p["niqe"], "file",
         "NIQE pristine-model parameters mu_prisparam (1x36), cov_prisparam (36x36)",
         "metric niqe", _pyiqa_source("niqe_modelparameters.mat", p["niqe"])),
        ("brisque", p["brisque"], "file",
         "BRISQUE SVR support vectors: torch.save((sv_coef (N,), sv (N, 36)))",
         "metric brisque", _pyiqa_source("brisque_svm_weights.pth", p["brisque"])),
        ("qalign", _hf_cache_dir("q-future/one-align"), "hf-cache",
         "Q-Align (mPLUG-Owl2, LLaMA-7B based; about 16 GB in fp16), loaded by repository id",
         "metric qalign (needs a GPU in practice)",
         "hf download q-future/one-align (into the Hugging Face cache; no --local-dir)"),
    ]


def _paths(section: dict | None) -> dict:
    section = dict(section or {})
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"weights: unknown key(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(DEFAULTS)}")
    empty = sorted(k for k, v in section.items() if v is None or str(v) == "")
    if empty:
        raise ValueError(f"weights: {', '.join(empty)} need a path (leave a key out to keep "
                         "its default)")
    return {**DEFAULTS, **{k: str(v) for k, v in section.items()}}


def _setting(name: str, kind: str) -> str:
    if kind == "hf-cache":
        return "Hugging Face cache (HF_HUB_CACHE / HF_HOME)"
    return "weights.torch_home" if name == "lpips_alexnet" else f"weights.{name}"


def registry(section: dict | None) -> list[Weight]:
    """Every weight with its path under ``section`` (the ``weights:`` config section)."""
    return [Weight(name=n, path=Path(path), kind=kind, what=what, used_by=used, source=src,
                   setting=_setting(n, kind))
            for n, path, kind, what, used, src in _entries(_paths(section))]


def entry(section: dict | None, name: str) -> Weight:
    """The registry entry ``name``; an unknown name is a ValueError listing the known ones."""
    weights = {w.name: w for w in registry(section)}
    if name not in weights:
        raise ValueError(f"unknown weight {name!r}; expected one of {', '.join(weights)}")
    return weights[name]


def missing_message(weight: Weight) -> str:
    """One line: which key, which file, and how to get it."""
    return (f"{weight.setting}: {weight.what} not found at {weight.path}; get it with: "
            f"{weight.source}")


def resolve(section: dict | None, name: str) -> Path:
    """The local path of weight ``name``; FileNotFoundError (key, file, how to get it) when
    it is not there."""
    weight = entry(section, name)
    if not weight.present():
        raise FileNotFoundError(missing_message(weight))
    return weight.path


#: open_clip's download URL of OpenAI's CLIP weights, by architecture (pretrained tag openai).
_OPENAI_CLIP = {
    "ViT-B-32": "https://openaipublic.azureedge.net/clip/models/40d365715913c9da98579312b702a82"
                "c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt",
    "ViT-L-14": "https://openaipublic.azureedge.net/clip/models/b8cca3fd41ae0c99ba7e8951adf17d2"
                "67cdb84cd88be6f7c2e0eca1737a03836/ViT-L-14.pt",
}


def _is_file_setting(value) -> bool:
    """A checkpoint setting that names a file (a path or a file name with a suffix), not an
    open_clip pretrained tag (``openai``, ``laion2b_s34b_b79k``) or null."""
    return value is not None and ("/" in str(value) or Path(str(value)).suffix != "")


def _clip_source(arch: str, path: str, quick_gelu: bool = True) -> str:
    """How to get a CLIP weights file: OpenAI's URL for OpenAI's (QuickGELU) weights, else
    the open_clip tag route."""
    if arch in _OPENAI_CLIP and quick_gelu:
        return (f"wget {_OPENAI_CLIP[arch]} -O {path} (the file open_clip fetches for "
                f"create_model('{arch}', pretrained='openai'))")
    return (f"open_clip.create_model('{arch}', pretrained=<tag>) where there is internet, "
            f"then copy the file from open_clip's cache to {path}")


def config_weights(config: dict) -> list[Weight]:
    """The CLIP weights files a validated config's estimators load, where they are files at
    paths the weights section does not already list: HD-CLIP's CLIP (hdclip.model.checkpoint),
    DA-CLIP's CLIP (estimation.daclip_model.checkpoint) and DA-CLIP's released weights
    (estimation.daclip_weights)."""
    model, est = config["hdclip"]["model"], config["estimation"]
    daclip = est.get("daclip_model") or model
    candidates = [
        ("hdclip_clip", model["checkpoint"], "hdclip.model.checkpoint",
         f"CLIP {model['arch']} weights", "HD-CLIP's two branches; the CLIP zero-shot baseline",
         _clip_source(model["arch"], str(model["checkpoint"]), model.get("quick_gelu", False))),
        ("daclip_clip", daclip["checkpoint"], "estimation.daclip_model.checkpoint",
         f"CLIP {daclip['arch']} weights", "the DA-CLIP-style baseline (table 2)",
         _clip_source(daclip["arch"], str(daclip["checkpoint"]),
                      daclip.get("quick_gelu", False))),
        ("daclip_weights", est["daclip_weights"], "estimation.daclip_weights",
         f"DA-CLIP's released checkpoint (on CLIP {daclip['arch']})",
         "table 2, the 'DA-CLIP (released weights)' row",
         "the pretrained weights of DA-CLIP's README (github.com/Algolzw/daclip-uir)"),
    ]
    listed = {str(w.path) for w in registry(config.get("weights"))}
    out: list[Weight] = []
    for name, value, setting, what, used_by, source in candidates:
        if not _is_file_setting(value) or str(Path(value)) in listed | {str(w.path) for w in out}:
            continue
        out.append(Weight(name=name, path=Path(value), kind="file", what=what, used_by=used_by,
                          source=source, setting=setting))
    return out


def check(section: dict | None, *, names: list[str] | None = None,
          extra: list[Weight] = ()) -> list[dict]:
    """One row per weight (or per name in ``names``), then per weight of ``extra`` (e.g.
    :func:`config_weights`): name, status (found / missing), path, kind, setting, what,
    used_by and source (how to get it)."""
    weights = registry(section) if names is None else [entry(section, n) for n in names]
    weights = [*weights, *extra]
    return [{"name": w.name, "status": "found" if w.present() else "missing",
             "path": str(w.path), "kind": w.kind, "setting": w.setting, "what": w.what,
             "used_by": w.used_by, "source": w.source} for w in weights]


def format_check(rows: list[dict]) -> str:
    """The report of ``zephir weights check``: a line per weight, how to get each missing one,
    and a count."""
    width = max((len(r["name"]) for r in rows), default=0)
    lines = []
    for r in rows:
        lines.append(f"{r['status']:<8} {r['name']:<{width}}  {r['path']}")
        if r["status"] == "missing":
            lines.append(f"{'':<8} {'':<{width}}  {r['what']}; used by {r['used_by']}")
            lines.append(f"{'':<8} {'':<{width}}  get it: {r['source']}")
    found = sum(r["status"] == "found" for r in rows)
    lines.append(f"{found} of {len(rows)} weights found.")
    return "\n".join(lines) + "\n"
