"""HD-CLIP's conditioning of a set of LQ images (the ``zephir embed`` job, paper section 3.2).

HD-CLIP runs once per LQ image, here in the main environment, and writes one file per set
(zephir.conditioning): the semantic embedding, the per-type degradation embeddings, presences
and levels of every image, and HD-CLIP's text embeddings of the bridge's texts. Every restore
job of that set (each backbone, mode and sweep point, in the backbone's own environment) reads
the file instead of running HD-CLIP again.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from zephir import conditioning, datasets
from zephir import io as zio


@torch.no_grad()
def hdclip_text(hd_model, texts) -> torch.Tensor:
    """(N, d) unit text embeddings of ``texts`` from HD-CLIP's CLIP text encoder."""
    import open_clip

    from zephir.hdclip.model import register_architectures

    register_architectures()
    tokenizer = open_clip.get_tokenizer(hd_model.cfg.arch)
    device = next(hd_model.parameters()).device
    out = []
    for start in range(0, len(texts), 256):
        chunk = list(texts[start:start + 256])
        out.append(hd_model.clip.encode_text(tokenizer(chunk).to(device)).float().cpu())
    return F.normalize(torch.cat(out), dim=-1)


def conditionings(hd_model, images) -> list[conditioning.Conditioning]:
    """HD-CLIP's :class:`~zephir.conditioning.Conditioning` of full-size RGB uint8 images
    (zephir.hdclip.predict.embed: crops, never resized)."""
    from zephir.hdclip.predict import embed

    device = next(hd_model.parameters()).device
    types = tuple(hd_model.cfg.types)
    return [conditioning.Conditioning(semantic=e.semantic, embeddings=e.embeddings,
                                      present=e.present, levels=e.levels, types=types)
            for e in embed(hd_model, images, device, semantic=True)]


def embed_set(checkpoint: str | Path, source: str | Path, out: str | Path, *,
              device: str | torch.device = "cpu", batch: int = 8,
              progress: bool = False) -> conditioning.Embeddings:
    """Write the conditioning file ``out`` of every LQ image of ``source`` (a blind manifest,
    an image folder or an index CSV: zephir.datasets.lq_inputs) with the trained HD-CLIP at
    ``checkpoint`` (its folder or ``model.safetensors``: zephir.hdclip.load_pretrained);
    returns it as read back. An unreadable image is a ValueError naming it
    (every restore job needs every image)."""
    from zephir.bridge import hdclip_texts
    from zephir.hdclip import load_pretrained
    from zephir.restore import hdclip_info

    inputs = datasets.lq_inputs(source)
    hd_model, meta = load_pretrained(checkpoint, device)
    hd_model.eval()
    sha1 = {stem: zio.file_sha1(path) for stem, path in inputs.items()}
    stems = list(inputs)
    images: dict[str, conditioning.Conditioning] = {}
    for start in range(0, len(stems), batch):
        chunk = stems[start:start + batch]
        pixels = [zio.load_image(inputs[s]).pixels for s in chunk]
        images.update(zip(chunk, conditionings(hd_model, pixels), strict=True))
        if progress:
            print(f"embed: {len(images)}/{len(stems)}", flush=True)
    texts = hdclip_texts()
    info = {**hdclip_info(hd_model, meta, checkpoint), "sha1": meta["sha1"]}
    conditioning.write(out, images, texts=texts, text=hdclip_text(hd_model, texts),
                       hdclip=info, lq_sha1=sha1)
    return conditioning.read(out)
