"""A grayscale ResNet trunk whose four stages each take their blocks from ResNet-18, -34 or -50.

Built from torchvision's `BasicBlock`/`Bottleneck` the way `torchvision.models.ResNet._make_layer` stacks
them, but with a 1-channel stem (no pretrained weights, so nothing asks for 3 channels) and a cut after
stage 2, 3 or 4.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

# name -> (block type, blocks per stage 1..4), as in torchvision's resnet18/34/50
STAGE_SPECS: dict[str, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    "r18": (BasicBlock, (2, 2, 2, 2)),
    "r34": (BasicBlock, (3, 4, 6, 3)),
    "r50": (Bottleneck, (3, 4, 6, 3)),
}
CUT_CHOICES = (2, 3, 4)
STEM_CHANNELS = 64


def stage_problems(stages: list[str], cut_after: int) -> list[str]:
    out = []
    if cut_after not in CUT_CHOICES:
        out.append(f"cut_after={cut_after} must be one of {list(CUT_CHOICES)}")
    for i, name in enumerate(stages, start=1):
        if name not in STAGE_SPECS:
            out.append(f"stage{i}={name!r} must be one of {sorted(STAGE_SPECS)}")
    return out


def _make_stage(block: type[nn.Module], inplanes: int, planes: int, count: int, stride: int) -> nn.Sequential:
    out_ch = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_ch:
        downsample = nn.Sequential(conv1x1(inplanes, out_ch, stride), nn.BatchNorm2d(out_ch))
    layers = [block(inplanes, planes, stride, downsample)]
    layers += [block(out_ch, planes) for _ in range(count - 1)]
    return nn.Sequential(*layers)


class ResNetEncoder(nn.Module):
    """(B,1,H,W) -> (B,C,H/2^(cut+1),W/2^(cut+1)); `stages[i]` picks stage i+1's blocks."""

    def __init__(self, stages: list[str], cut_after: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, STEM_CHANNELS, kernel_size=7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(STEM_CHANNELS),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        inplanes = STEM_CHANNELS
        layers = []
        for i, name in enumerate(stages[:cut_after]):
            block, counts = STAGE_SPECS[name]
            layers.append(_make_stage(block, inplanes, 64 * 2**i, counts[i], stride=1 if i == 0 else 2))
            inplanes = 64 * 2**i * block.expansion
        self.stages = nn.Sequential(*layers)
        self.out_channels = inplanes
        self._init_weights()

    def _init_weights(self) -> None:
        # torchvision ResNet's initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))
