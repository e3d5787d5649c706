"""Stand-in for SeeSR ``ram/inference.py``."""
import torch


def inference_ram(image, model):
    """``(tags, tags_chinese)`` of the first image, as upstream returns them."""
    with torch.no_grad():
        tags, tags_chinese = model.generate_tag(image)
    return tags[0], tags_chinese[0]
