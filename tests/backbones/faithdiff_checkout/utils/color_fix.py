"""Stand-in for FaithDiff's utils/color_fix.py: AdaIN of the target's channels to the source's
mean and standard deviation (unbiased variance + 1e-5), clamped to [0, 1], back to 8 bits by
torchvision's ToPILImage; the wavelet fix, simplified to the target's high frequencies on the
source's low ones with one 5 x 5 box blur (upstream: a five-level dilated blur pyramid)."""
import torch
from torchvision.transforms import ToPILImage, ToTensor

RECORD = {"adain": [], "wavelet": []}


def _stats(x: torch.Tensor):
    flat = x.flatten(1)
    return flat.mean(dim=1)[:, None, None], (flat.var(dim=1) + 1e-5).sqrt()[:, None, None]


def adain_color_fix(target, source):
    RECORD["adain"].append((target.copy(), source.copy()))
    t, s = ToTensor()(target), ToTensor()(source)
    (mt, st), (ms, ss) = _stats(t), _stats(s)
    return ToPILImage()(((t - mt) / st * ss + ms).clamp(0.0, 1.0))


def _blur(x: torch.Tensor) -> torch.Tensor:
    padded = torch.nn.functional.pad(x[None], (2, 2, 2, 2), mode="replicate")
    return torch.nn.functional.avg_pool2d(padded, 5, stride=1)[0]


def wavelet_color_fix(target, source):
    RECORD["wavelet"].append((target.copy(), source.copy()))
    t, s = ToTensor()(target), ToTensor()(source)
    return ToPILImage()((t - _blur(t) + _blur(s)).clamp(0.0, 1.0))
