"""Stand-in for SeeSR ``ram/models/ram_lora.py``: ``ram(pretrained, pretrained_condition,
image_size, vit)`` builds a tagger with RAM's two methods that SeeSR uses, at toy size.

``generate_image_embeds(image)`` gives (B, 1 + (image_size / 32)^2, width) tokens (a class token
and one per 32 px patch, as RAM's Swin-L at 384 gives 145); ``generate_tag(image)`` gives
``(tags, tags_chinese)`` lists of ``", "``-joined tags whose sigmoid score passes the threshold
(ram_lora.py 182-229). The weights are a state dict file (``torch.save``); ``pretrained_condition``
(DAPE) is laid over it with ``strict=False``, as upstream loads its LoRA weights (316-334).
As upstream's, ``RAMLora`` defaults to ``vit="base"``, and ``ram`` with weights needs ``vit``
(and, for a Swin backbone, ``image_size``) given: a KeyError without them.
"""
import torch
from torch import nn

TAGS = ("cat", "dog", "grass", "sky", "building", "tree", "person", "car")
PATCH = 32


class RAMLora(nn.Module):
    def __init__(self, image_size=384, vit="base", width=32, threshold=0.5, **kwargs):
        super().__init__()
        if image_size % PATCH:
            raise ValueError(f"image_size {image_size} is not a multiple of {PATCH}")
        self.image_size, self.vit = image_size, vit
        self.patches = nn.Conv2d(3, width, kernel_size=PATCH, stride=PATCH)
        self.image_proj = nn.Linear(width, width)
        self.fc = nn.Linear(width, len(TAGS))
        self.threshold = threshold
        self.tag_list = list(TAGS)

    def visual_encoder(self, image):
        if tuple(image.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(f"RAM stand-in: expected {self.image_size} px input, got "
                             f"{tuple(image.shape[-2:])}")
        tokens = self.patches(image).flatten(2).transpose(1, 2)
        return torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)

    def generate_image_embeds(self, image):
        return self.image_proj(self.visual_encoder(image))

    def generate_tag(self, image, threshold=None, tag_input=None):
        embeds = self.generate_image_embeds(image)
        scores = torch.sigmoid(self.fc(embeds[:, 0]))
        limit = self.threshold if threshold is None else threshold
        tags = [", ".join(t for t, s in zip(self.tag_list, row) if s > limit)
                for row in scores.tolist()]
        return tags, list(tags)


def ram(pretrained="", pretrained_condition="", **kwargs):
    model = RAMLora(**kwargs)
    if pretrained:
        # upstream reads both from kwargs, with no default (ram_lora.py 318-327, and for the
        # Swin backbones ram/models/utils.py 279-284)
        if kwargs["vit"] in ("swin_b", "swin_l"):
            kwargs["image_size"]
        model.load_state_dict(torch.load(pretrained, map_location="cpu"))
    if pretrained_condition:
        model.load_state_dict(torch.load(pretrained_condition, map_location="cpu"), strict=False)
    return model
