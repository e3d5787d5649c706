"""Stand-in for FaithDiff's utils/color_fix.py: AdaIN of the target's channels to the source's
mean and standard deviation (unbiased variance + 1e-5), clamped to [0, 1], back to 8 bits by
torchvision's ToPILImage."""
import torch
from torchvision.transforms import ToPILImage, ToTensor

RECORD = {"adain": []}


def _stats(x: torch.Tensor):
    flat = x.flatten(1)
    return flat.mean(dim=1)[:, None, None], (flat.var(dim=1) + 1e-5).sqrt()[:, None, None]


def adain_color_fix(target, source):
    RECORD["adain"].append((target.copy(), source.copy()))
    t, s = ToTensor()(target), ToTensor()(source)
    (mt, st), (ms, ss) = _stats(t), _stats(s)
    return ToPILImage()(((t - mt) / st * ss + ms).clamp(0.0, 1.0))
