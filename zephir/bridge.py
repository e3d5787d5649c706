"""The bridge: HD-CLIP's view of an LQ image, put into a backbone's text space (a choice).

The paper does not say how HD-CLIP's embeddings (512-d for ViT-B/32) enter SD 1.5 (768),
SD 2 (1024) or SDXL (2048 + pooled 1280) without training (docs/method.md, "From HD-CLIP space
to a backbone's text space"). Both options here are training-free and build the HD-CLIP-
conditioned ``[negative, positive]`` pair that the ``cfg`` and ``cfpg`` modes use
(zephir.backbones.base): degradation cues in the negative branch, semantic cues in the positive
one (paper, section 3.2).

``prompt`` (default)
    HD-CLIP's prediction in words, encoded by the backbone's own text encoder(s):

    * negative: the backbone's negative prompt, then one phrase per degradation type whose
      presence is at least ``present_threshold`` (0.5), an adjective from its 0..100 level
      followed by the type's noun: level >= 66 ``heavy``, >= 33 ``moderate``, else ``slight``
      (thresholds at thirds of the scale); nouns: blur ``blur``, noise ``noise``, jpeg
      ``jpeg artifacts``, downsample ``pixelation``. E.g. ``"..., heavy blur, slight noise"``.
    * positive: the prompt, then the ``tags`` (3) words of :data:`TAGS` whose CLIP text
      embeddings (``"a photo of a {tag}."`` through HD-CLIP's own text encoder, encoded once
      per bridge) are nearest in cosine to the image's HD-CLIP semantic embedding.

    ``hd_pair = backbone.encode_pair(negative + ", " + words, prompt + ", " + tags)``.

``linear``
    A closed-form ridge regression ``y = y_mean + (x - x_mean) A``, fitted once per bridge on
    :func:`vocabulary` (scene words, ``"a photo of a ..."`` sentences, degradation phrases)
    encoded by both text encoders: ``x`` HD-CLIP's unit text embedding (d), ``y`` the
    backbone's sentence vector (its hidden state at the end-of-text token, D; SDXL's pooled
    embedding with a second map). Applied to the image's semantic embedding (positive) and to
    the HD-CLIP text embedding of the degradation phrase above (negative), the centred
    prediction ``(x - x_mean) A`` (times ``linear_scale``) is added to every token of the text
    prompt's hidden states. The map is fitted on text but applied to an image embedding:
    CLIP's modality gap shifts the positive by a roughly constant vector, and CFPG's
    projection (eq. 13) splits such a shift into its parallel and orthogonal parts.

:func:`make_hd_pair` returns the pair and a record of what was used (bridge, words, tags,
options) for the outputs' metadata.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from zephir.backbones.base import Backbone, TextEmbeds, join_prompt
from zephir.hdclip.predict import ImageEmbedding, describe

BRIDGES = ("prompt", "linear")

DEGRADATION_NOUNS = {"blur": "blur", "noise": "noise", "jpeg": "jpeg artifacts",
                     "downsample": "pixelation"}
"""The noun of each degradation type in a negative prompt."""

TAGS = (
    # people, animals
    "person", "face", "man", "woman", "child", "crowd", "dog", "cat", "bird", "horse", "cow",
    "sheep", "elephant", "bear", "zebra", "giraffe", "fish", "butterfly", "insect", "squirrel",
    # vehicles, street
    "car", "bus", "truck", "train", "bicycle", "motorcycle", "boat", "airplane", "rocket",
    "road", "street", "traffic light", "sign", "bridge",
    # buildings, indoor
    "building", "house", "tower", "church", "window", "door", "wall", "roof", "room",
    "kitchen", "table", "chair", "bed", "sofa", "book", "clock", "vase", "cup", "bottle",
    "bowl", "plate", "food", "fruit", "vegetable", "cake", "coffee",
    # nature, scenes
    "sky", "cloud", "sun", "moon", "star", "tree", "forest", "grass", "flower", "leaf",
    "plant", "garden", "field", "mountain", "hill", "rock", "stone", "sand", "beach", "sea",
    "lake", "river", "water", "snow", "ice", "desert", "city", "night", "landscape", "park",
    # materials, textures, other
    "brick", "wood", "metal", "gravel", "fabric", "text", "coin", "painting", "portrait",
    "toy", "computer", "phone", "cell", "space", "galaxy")
"""The built-in tag vocabulary of the ``prompt`` bridge (common scene and object words)."""
TAG_TEMPLATE = "a photo of a {}."


@dataclass(frozen=True)
class BridgeOptions:
    """Settings of the bridge (config ``restoration.bridge_options``).

    ``present_threshold``: presence probability from which a type gets a phrase;
    ``level_words``: ``(lowest level, adjective)`` from the top, the first the level reaches;
    ``tags``: semantic tags added to the positive prompt (``prompt`` bridge);
    ``ridge``: the ridge penalty of the ``linear`` fit (0 = plain least squares);
    ``linear_scale``: factor on the vector the ``linear`` bridge adds.
    """

    present_threshold: float = 0.5
    level_words: tuple[tuple[float, str], ...] = ((66.0, "heavy"), (33.0, "moderate"),
                                                  (0.0, "slight"))
    tags: int = 3
    ridge: float = 0.1
    linear_scale: float = 1.0

    @classmethod
    def from_dict(cls, values: dict | None) -> BridgeOptions:
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"bridge options: unknown key(s) {', '.join(unknown)}; expected "
                             f"some of {', '.join(sorted(known))}")
        if "level_words" in values:
            values["level_words"] = tuple((float(lo), str(w)) for lo, w in values["level_words"])
        return cls(**values)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["level_words"] = [list(p) for p in self.level_words]
        return out


# --------------------------------------------------------------------------- words

def level_word(level: float, options: BridgeOptions = BridgeOptions()) -> str:
    """The adjective of a 0..100 level (``heavy`` from 66, ``moderate`` from 33, ``slight``)."""
    for lowest, word in sorted(options.level_words, key=lambda p: -p[0]):
        if level >= lowest:
            return word
    return min(options.level_words)[1]


def degradation_words(description: dict, options: BridgeOptions = BridgeOptions()
                      ) -> list[str]:
    """Phrases for the types of ``description`` (zephir.hdclip.predict.describe) present with
    probability at least ``options.present_threshold``, in the model's type order."""
    words = []
    for kind, d in description["degradations"].items():
        if d["present"] >= options.present_threshold:
            noun = DEGRADATION_NOUNS.get(kind, kind)
            words.append(f"{level_word(d['level'], options)} {noun}")
    return words


def vocabulary() -> list[str]:
    """The prompts the ``linear`` map is fitted on: every tag bare and in the template, and
    every degradation phrase (adjective x noun) with and without a level word."""
    adjectives = ("slight", "moderate", "heavy")
    phrases = [f"{a} {n}" for n in DEGRADATION_NOUNS.values() for a in adjectives]
    return ([*TAGS, *(TAG_TEMPLATE.format(t) for t in TAGS), *DEGRADATION_NOUNS.values(),
             *phrases, "a photo", "a high-resolution photo", "a low-quality photo"])


@torch.no_grad()
def hdclip_text(hd_model, texts: Sequence[str]) -> torch.Tensor:
    """(N, d) unit text embeddings of ``texts`` from HD-CLIP's CLIP text encoder."""
    import open_clip

    from zephir.hdclip.model import register_architectures

    register_architectures()
    tokenizer = open_clip.get_tokenizer(hd_model.cfg.arch)
    device = next(hd_model.parameters()).device
    out = hd_model.clip.encode_text(tokenizer(list(texts)).to(device)).float()
    return F.normalize(out, dim=-1).cpu()


# --------------------------------------------------------------------------- linear map

@dataclass
class LinearMap:
    """``y = y_mean + (x - x_mean) A`` (float64); :meth:`delta` is the centred part."""

    A: torch.Tensor
    x_mean: torch.Tensor
    y_mean: torch.Tensor
    r2: float = float("nan")

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() - self.x_mean) @ self.A

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.y_mean + self.delta(x)


def fit_linear(X: torch.Tensor, Y: torch.Tensor, ridge: float = 0.1) -> LinearMap:
    """Ridge regression of ``Y`` (N, D) on ``X`` (N, d) with an intercept, in closed form:
    ``A = (Xc^T Xc + ridge I)^-1 Xc^T Yc`` on the centred data (``torch.linalg.solve``), or
    the minimum-norm least-squares solution (``torch.linalg.lstsq``) when ``ridge`` is 0.
    ``r2`` is the fit's coefficient of determination on the data."""
    assert X.ndim == 2 and Y.ndim == 2 and X.shape[0] == Y.shape[0], (X.shape, Y.shape)
    X, Y = X.double(), Y.double()
    x_mean, y_mean = X.mean(0), Y.mean(0)
    Xc, Yc = X - x_mean, Y - y_mean
    if ridge > 0:
        gram = Xc.T @ Xc + ridge * torch.eye(X.shape[1], dtype=X.dtype)
        A = torch.linalg.solve(gram, Xc.T @ Yc)
    else:
        A = torch.linalg.lstsq(Xc, Yc, driver="gelsd").solution
    total = float((Yc ** 2).sum())
    r2 = 1.0 - float(((Yc - Xc @ A) ** 2).sum()) / total if total > 0 else float("nan")
    return LinearMap(A=A, x_mean=x_mean, y_mean=y_mean, r2=r2)


# --------------------------------------------------------------------------- the bridge

class Bridge:
    """One bridge between one HD-CLIP model and one backbone; what it needs is computed once
    (the tag embeddings, the linear maps) and reused for every image of a job."""

    def __init__(self, kind: str, hd_model, backbone: Backbone,
                 options: BridgeOptions | dict | None = None) -> None:
        if kind not in BRIDGES:
            raise ValueError(f"bridge: expected one of {', '.join(BRIDGES)}, got {kind!r}")
        self.kind = kind
        self.hd_model = hd_model
        self.backbone = backbone
        self.options = (options if isinstance(options, BridgeOptions)
                        else BridgeOptions.from_dict(options))
        self._tag_embeddings: torch.Tensor | None = None
        self._maps: dict[str, LinearMap] | None = None

    # -- prompt bridge
    def tag_embeddings(self) -> torch.Tensor:
        """(T, d) HD-CLIP text embeddings of the tag template, one row per tag of TAGS."""
        if self._tag_embeddings is None:
            self._tag_embeddings = hdclip_text(self.hd_model,
                                               [TAG_TEMPLATE.format(t) for t in TAGS])
        return self._tag_embeddings

    def tags(self, emb: ImageEmbedding) -> list[tuple[str, float]]:
        """The ``options.tags`` tags nearest in cosine to the semantic embedding."""
        if self.options.tags <= 0:
            return []
        sem = F.normalize(emb.semantic.float().cpu(), dim=-1)
        if not bool(sem.abs().sum() > 0):
            raise ValueError("the image embedding has no semantic part: embed with "
                             "semantic=True")
        scores = self.tag_embeddings() @ sem
        top = scores.topk(min(self.options.tags, len(TAGS)))
        return [(TAGS[i], round(float(s), 4)) for s, i in zip(top.values, top.indices, strict=True)]

    # -- linear bridge
    def maps(self) -> dict[str, LinearMap]:
        """The fitted maps: ``hidden`` (to the sentence vector) and, for backbones with pooled
        embeddings, ``pooled``."""
        if self._maps is None:
            vocab = vocabulary()
            X = hdclip_text(self.hd_model, vocab)
            target = self.backbone.encode_prompt(vocab)
            self._maps = {"hidden": fit_linear(X, target.summary().float().cpu(),
                                               self.options.ridge)}
            if target.pooled is not None:
                self._maps["pooled"] = fit_linear(X, target.pooled.float().cpu(),
                                                  self.options.ridge)
        return self._maps

    # -- both
    @torch.no_grad()
    def pair(self, emb: ImageEmbedding, *, prompt: str, negative_prompt: str
             ) -> tuple[TextEmbeds, dict]:
        """The HD-CLIP-conditioned ``[negative, positive]`` pair for one image, and a record."""
        words = degradation_words(describe(self.hd_model, emb), self.options)
        record = {"bridge": self.kind, "degradation_words": words,
                  "bridge_options": self.options.to_dict()}
        if self.kind == "prompt":
            tags = self.tags(emb)
            negative = join_prompt(negative_prompt, *words)
            positive = join_prompt(prompt, *(t for t, _ in tags))
            record.update(tags=[t for t, _ in tags], tag_scores=[s for _, s in tags],
                          hd_negative_prompt=negative, hd_positive_prompt=positive)
            return self.backbone.encode_pair(negative, positive), record
        maps = self.maps()
        text = self.backbone.encode_pair(negative_prompt, prompt)
        x_pos = emb.semantic.float().cpu()
        phrase = join_prompt(*words)
        x_neg = hdclip_text(self.hd_model, [phrase])[0] if words else None

        def shift(name: str, like: torch.Tensor) -> torch.Tensor:
            m = maps[name]
            neg = m.delta(x_neg) if x_neg is not None else torch.zeros_like(m.y_mean)
            out = self.options.linear_scale * torch.stack([neg, m.delta(x_pos)])
            return out.to(device=like.device, dtype=like.dtype)

        hidden = text.hidden + shift("hidden", text.hidden)[:, None, :]
        pooled = None if text.pooled is None else text.pooled + shift("pooled", text.pooled)
        record.update(hd_negative_phrase=phrase, vocabulary=len(vocabulary()),
                      fit_r2={k: round(m.r2, 4) for k, m in maps.items()})
        return TextEmbeds(hidden, pooled, text.eos), record


def make_hd_pair(bridge: str | Bridge, hd_model, backbone: Backbone, emb: ImageEmbedding, *,
                 prompt: str, negative_prompt: str,
                 options: BridgeOptions | dict | None = None) -> tuple[TextEmbeds, dict]:
    """The HD-CLIP-conditioned ``[negative, positive]`` pair of one image in ``backbone``'s
    text space, and a record of what was used (bridge, degradation words, tags, options).

    ``prompt`` and ``negative_prompt`` are the texts the backbone's text branches use
    (``backbone.compose_prompts``). Pass a :class:`Bridge` to reuse its tag embeddings or
    linear maps across images (restore_folder does).
    """
    if not isinstance(bridge, Bridge):
        bridge = Bridge(bridge, hd_model, backbone, options)
    return bridge.pair(emb, prompt=prompt, negative_prompt=negative_prompt)
