"""The bridge: HD-CLIP's view of an LQ image, put into a backbone's text space (a choice).

The paper does not say how HD-CLIP's embeddings (512-d for ViT-B/32) enter SD 1.5 (768),
SD 2 (1024) or SDXL (2048 + pooled 1280) without training (docs/method.md, "From HD-CLIP space
to a backbone's text space"). Both options here are training-free and build the HD-CLIP-
conditioned ``[negative, positive]`` pair that the ``cfg`` and ``cfpg`` modes use
(zephir.backbones.base): degradation cues in the negative branch, semantic cues in the positive
one (paper, section 3.2). They read HD-CLIP's output from a conditioning file
(zephir.conditioning, written once per set by ``zephir embed``), so they run inside a
backbone's own environment without HD-CLIP.

``embedding`` (the paper config's default)
    HD-CLIP's embeddings themselves, through a linear map into the backbone's token space:

    * the map: a closed-form ridge regression ``y = y_mean + (x - x_mean) A``, fitted once per
      bridge on :func:`vocabulary` (scene words, ``"a photo of a ..."`` sentences, degradation
      phrases) encoded by both text encoders: ``x`` HD-CLIP's unit text embedding (d), ``y`` the
      backbone's sentence vector (its hidden state at the end-of-text token, D; SDXL's pooled
      embedding with a second map). ``delta(x) = (x - x_mean) A`` is its centred part;
    * positive: ``v+ = delta(s)`` of the image's unit semantic embedding ``s``;
    * negative: ``v- = sum_k p_k delta(e_k)``, the degradation embeddings e_k (eq. 4) weighted by
      their presences p_k: zero for a clean image, growing and turning continuously with each
      type's presence and level (e_k moves along the ordinal space of eq. 2);
    * scale: ``v`` is added to every token of the text prompt's hidden states times
      ``embedding_scale * n_tok / n_vocab``, where ``n_tok`` is the median norm of the prompt
      pair's token states and ``n_vocab`` the RMS norm of ``delta`` over the vocabulary: a
      vocabulary-sized vector moves each token by ``embedding_scale`` (0.5) of a token's norm
      **(choice)**. The record of every output holds ``n_tok``, ``n_vocab`` and the norms of
      the two added vectors.

    The map is fitted on text but applied to image embeddings: CLIP's modality gap shifts
    ``delta(s)`` by a roughly constant vector, and CFPG's projection (eq. 13) splits such a shift
    into its parallel and orthogonal parts.

``prompt``
    HD-CLIP's prediction in words, encoded by the backbone's own text encoder(s) (coarse: three
    adjectives cannot say how severe a degradation is, the point the paper makes of CLIP text):

    * negative: the backbone's negative prompt, then one phrase per degradation type whose
      presence is at least ``present_threshold`` (0.5), an adjective from its 0..100 level
      followed by the type's noun: level >= 66 ``heavy``, >= 33 ``moderate``, else ``slight``
      (thresholds at thirds of the scale); nouns: blur ``blur``, noise ``noise``, jpeg
      ``jpeg artifacts``, downsample ``pixelation``. E.g. ``"..., heavy blur, slight noise"``.
    * positive: the prompt, then the ``tags`` (3) words of :data:`TAGS` whose HD-CLIP text
      embeddings (``"a photo of a {tag}."``) are nearest in cosine to the semantic embedding.

:meth:`Bridge.pair` returns the pair and a record of what was used (bridge, words, tags, norms,
options) for the outputs' metadata.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F

from zephir.backbones.base import Backbone, TextEmbeds, join_prompt
from zephir.conditioning import Conditioning

BRIDGES = ("embedding", "prompt")

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

    ``present_threshold``: presence probability from which a type gets a phrase (``prompt``);
    ``level_words``: ``(lowest level, adjective)`` from the top, the first the level reaches;
    ``tags``: semantic tags added to the positive prompt (``prompt`` bridge);
    ``ridge``: the ridge penalty of the ``embedding`` map's fit (0 = plain least squares);
    ``embedding_scale``: how far a vocabulary-sized vector moves each token, in token norms
    (``embedding`` bridge).
    """

    present_threshold: float = 0.5
    level_words: tuple[tuple[float, str], ...] = ((66.0, "heavy"), (33.0, "moderate"),
                                                  (0.0, "slight"))
    tags: int = 3
    ridge: float = 0.1
    embedding_scale: float = 0.5

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
    """Phrases for the types of ``description`` (Conditioning.describe) present with
    probability at least ``options.present_threshold``, in the model's type order."""
    words = []
    for kind, d in description["degradations"].items():
        if d["present"] >= options.present_threshold:
            noun = DEGRADATION_NOUNS.get(kind, kind)
            words.append(f"{level_word(d['level'], options)} {noun}")
    return words


def vocabulary() -> list[str]:
    """The prompts the ``embedding`` map is fitted on: every tag bare and in the template, and
    every degradation phrase (adjective x noun) with and without a level word."""
    adjectives = ("slight", "moderate", "heavy")
    phrases = [f"{a} {n}" for n in DEGRADATION_NOUNS.values() for a in adjectives]
    return ([*TAGS, *(TAG_TEMPLATE.format(t) for t in TAGS), *DEGRADATION_NOUNS.values(),
             *phrases, "a photo", "a high-resolution photo", "a low-quality photo"])


def hdclip_texts() -> list[str]:
    """Every text whose HD-CLIP text embedding a bridge needs (the tag template of each tag,
    then :func:`vocabulary`), once each: what ``zephir embed`` stores beside the images."""
    return list(dict.fromkeys([*(TAG_TEMPLATE.format(t) for t in TAGS), *vocabulary()]))


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
    X, Y = X.detach().double(), Y.detach().double()
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

TextEncoder = Callable[[Sequence[str]], torch.Tensor]
"""HD-CLIP's text encoder as the bridge sees it: texts -> (N, d) unit embeddings
(``zephir.conditioning.Embeddings.text_embeddings`` reads them from a conditioning file)."""


def _median_token_norm(hidden: torch.Tensor) -> float:
    """The median L2 norm of the token states of a (N, L, D) pair."""
    return float(hidden.detach().float().norm(dim=-1).flatten().quantile(0.5))


class Bridge:
    """One bridge between HD-CLIP's outputs and one backbone; what it needs is computed once
    (the tag embeddings, the fitted maps) and reused for every image of a job.

    Args:
        kind: one of :data:`BRIDGES`.
        backbone: the loaded backbone (its text encoder(s) give the target space).
        hd_text: HD-CLIP's text embeddings, texts -> (N, d) unit rows (:data:`TextEncoder`).
        options: :class:`BridgeOptions` or a dict of them.
    """

    def __init__(self, kind: str, backbone: Backbone, hd_text: TextEncoder,
                 options: BridgeOptions | dict | None = None) -> None:
        if kind not in BRIDGES:
            raise ValueError(f"bridge: expected one of {', '.join(BRIDGES)}, got {kind!r}")
        self.kind = kind
        self.backbone = backbone
        self.hd_text = hd_text
        self.options = (options if isinstance(options, BridgeOptions)
                        else BridgeOptions.from_dict(options))
        self._tag_embeddings: torch.Tensor | None = None
        self._maps: dict[str, LinearMap] | None = None
        self._vocab_rms: dict[str, float] = {}

    # -- prompt bridge
    def tag_embeddings(self) -> torch.Tensor:
        """(T, d) HD-CLIP text embeddings of the tag template, one row per tag of TAGS."""
        if self._tag_embeddings is None:
            texts = [TAG_TEMPLATE.format(t) for t in TAGS]
            self._tag_embeddings = F.normalize(self.hd_text(texts).float(), dim=-1)
        return self._tag_embeddings

    def tags(self, cond: Conditioning) -> list[tuple[str, float]]:
        """The ``options.tags`` tags nearest in cosine to the semantic embedding."""
        if self.options.tags <= 0:
            return []
        sem = F.normalize(cond.semantic.float().cpu(), dim=-1)
        if not bool(sem.abs().sum() > 0):
            raise ValueError("the conditioning has no semantic embedding (embed with "
                             "semantic=True)")
        scores = self.tag_embeddings() @ sem
        top = scores.topk(min(self.options.tags, len(TAGS)))
        return [(TAGS[i], round(float(s), 4))
                for s, i in zip(top.values, top.indices, strict=True)]

    # -- embedding bridge
    def maps(self) -> dict[str, LinearMap]:
        """The fitted maps: ``hidden`` (to the sentence vector) and, for backbones with pooled
        embeddings, ``pooled``."""
        if self._maps is None:
            vocab = vocabulary()
            X = self.hd_text(vocab).float().cpu()
            target = self.backbone.encode_prompt(vocab)
            ys = {"hidden": target.summary()}
            if target.pooled is not None:
                ys["pooled"] = target.pooled
            self._maps = {}
            for name, Y in ys.items():
                m = fit_linear(X, Y.float().cpu(), self.options.ridge)
                self._maps[name] = m
                self._vocab_rms[name] = float(m.delta(X).pow(2).sum(-1).mean().sqrt())
        return self._maps

    def vocab_rms(self, name: str) -> float:
        """``n_vocab``: the RMS norm of map ``name``'s centred output over the vocabulary."""
        self.maps()
        return self._vocab_rms[name]

    def vectors(self, cond: Conditioning, name: str = "hidden") -> torch.Tensor:
        """(2, D) ``[v-, v+]`` of one image through map ``name`` (float64, unscaled):
        ``v- = sum_k p_k delta(e_k)``, ``v+ = delta(s)``."""
        m = self.maps()[name]
        neg = (cond.present.double()[:, None] * m.delta(cond.embeddings.float().cpu())).sum(0)
        return torch.stack([neg, m.delta(cond.semantic.float().cpu())])

    # -- both
    @torch.no_grad()
    def pair(self, cond: Conditioning, *, prompt: str, negative_prompt: str
             ) -> tuple[TextEmbeds, dict]:
        """The HD-CLIP-conditioned ``[negative, positive]`` pair for one image, and a record."""
        record = {"bridge": self.kind, "bridge_options": self.options.to_dict()}
        if self.kind == "prompt":
            words = degradation_words(cond.describe(), self.options)
            tags = self.tags(cond)
            negative = join_prompt(negative_prompt, *words)
            positive = join_prompt(prompt, *(t for t, _ in tags))
            record.update(degradation_words=words, tags=[t for t, _ in tags],
                          tag_scores=[s for _, s in tags], hd_negative_prompt=negative,
                          hd_positive_prompt=positive)
            return self.backbone.encode_pair(negative, positive), record
        text = self.backbone.encode_pair(negative_prompt, prompt)
        norms: dict[str, dict] = {}

        def shifted(name: str, states: torch.Tensor, n_ref: float) -> torch.Tensor:
            v = self.vectors(cond, name)
            factor = self.options.embedding_scale * n_ref / max(self.vocab_rms(name), 1e-12)
            added = factor * v
            norms[name] = {"reference": round(n_ref, 4),
                           "vocabulary_rms": round(self.vocab_rms(name), 4),
                           "factor": round(factor, 6),
                           "added_negative": round(float(added[0].norm()), 4),
                           "added_positive": round(float(added[1].norm()), 4)}
            added = added.to(device=states.device, dtype=states.dtype)
            return states + (added[:, None, :] if states.ndim == 3 else added)

        hidden = shifted("hidden", text.hidden, _median_token_norm(text.hidden))
        pooled = None
        if text.pooled is not None:
            n_pooled = float(text.pooled.float().norm(dim=-1).mean())
            pooled = shifted("pooled", text.pooled, n_pooled)
        record.update(norms=norms, vocabulary=len(vocabulary()),
                      fit_r2={k: round(m.r2, 4) for k, m in self.maps().items()})
        return TextEmbeds(hidden, pooled, text.eos), record
