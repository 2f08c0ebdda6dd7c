"""Random CNNs for property-based engine tests: the layer kinds real video CNNs contain."""

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from passrt.nn import Conv2dSame

ACTS = [nn.ReLU, nn.ReLU6, nn.Hardswish, nn.SiLU, nn.Sigmoid, lambda: nn.LeakyReLU(0.1), nn.Identity]


class ConvBlock(nn.Module):
    def __init__(self, cin, cout, k, s, d, depthwise, same, act, bn):
        super().__init__()
        groups = cin if depthwise else 1
        cout = cin if depthwise else cout
        if same:
            self.conv = Conv2dSame(cin, cout, k, s, dilation=d, groups=groups, bias=not bn)
        else:
            self.conv = nn.Conv2d(cin, cout, k, s, padding=(k // 2) * d, dilation=d, groups=groups, bias=not bn)
        self.bn = nn.BatchNorm2d(cout) if bn else nn.Identity()
        self.act = ACTS[act]()
        self.out_channels = cout

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Residual(nn.Module):
    def __init__(self, c, act, mul):
        super().__init__()
        self.body = ConvBlock(c, c, 3, 1, 1, False, False, act, True)
        self.mul = mul

    def forward(self, x):
        y = self.body(x)
        return x * torch.sigmoid(y) if self.mul else x + y


class Branches(nn.Module):
    """Two branches concatenated on channels, one through pooling and upsampling."""

    def __init__(self, c, pool, up_mode):
        super().__init__()
        self.a = nn.Conv2d(c, c, 1)
        self.pool = nn.MaxPool2d(2, 2) if pool == "max" else nn.AvgPool2d(2, 2)
        self.b = nn.Conv2d(c, c, 3, padding=1)
        self.up_mode = up_mode

    def forward(self, x):
        a = self.a(x)
        b = self.b(self.pool(x))
        b = F.interpolate(b, size=x.shape[2:], mode=self.up_mode,
                          align_corners=False if self.up_mode == "bilinear" else None)
        return torch.cat([a, F.relu(b)], 1)


class RandomNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        layers, c = [], 3
        for kind, p in spec:
            if kind == "conv":
                blk = ConvBlock(c, p["cout"], p["k"], p["s"], p["d"], p["dw"], p["same"], p["act"], p["bn"])
                c = blk.out_channels
            elif kind == "res":
                blk = Residual(c, p["act"], p["mul"])
            elif kind == "branch":
                blk = Branches(c, p["pool"], p["up"])
                c = 2 * c
            else:
                blk = nn.MaxPool2d(3, 1, 1) if p["pool"] == "max" else nn.AvgPool2d(3, 1, 1)
            layers.append(blk)
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 4, 1)

    def forward(self, x):
        y = self.head(self.body(x * 2 - 1))
        return y.permute(0, 2, 3, 1).reshape(1, -1, 4)


def _init(net):
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return net.eval()


conv_params = st.fixed_dictionaries({
    "cout": st.integers(2, 8), "k": st.sampled_from([1, 3, 5]), "s": st.sampled_from([1, 1, 2]),
    "d": st.sampled_from([1, 1, 2]), "dw": st.booleans(), "same": st.booleans(),
    "act": st.integers(0, len(ACTS) - 1), "bn": st.booleans(),
})
blocks = st.one_of(
    st.tuples(st.just("conv"), conv_params),
    st.tuples(st.just("res"), st.fixed_dictionaries({"act": st.integers(0, len(ACTS) - 1), "mul": st.booleans()})),
    st.tuples(st.just("branch"), st.fixed_dictionaries({"pool": st.sampled_from(["max", "avg"]),
                                                        "up": st.sampled_from(["nearest", "bilinear"])})),
    st.tuples(st.just("pool"), st.fixed_dictionaries({"pool": st.sampled_from(["max", "avg"])})),
)


@st.composite
def networks(draw):
    spec = draw(st.lists(blocks, min_size=1, max_size=6))
    # At most two stride-2 convs, so feature maps stay a few cells wide.
    strided = 0
    for kind, p in spec:
        if kind == "conv" and p["s"] == 2:
            strided += 1
            if strided > 2:
                p["s"] = 1
    torch.manual_seed(draw(st.integers(0, 2**16)))
    return _init(RandomNet(spec))


class UpBlock(nn.Module):
    """A decoder stage: transposed conv (any geometry) with BatchNorm and activation."""

    def __init__(self, cin, p):
        super().__init__()
        groups = cin if p["dw"] else 1
        cout = cin if p["dw"] else p["cout"]
        k, s, d = p["k"], p["s"], p["d"]
        pad = min(p["pad"], d * (k - 1))
        op = min(p["op"], max(s, d) - 1)
        self.conv = nn.ConvTranspose2d(cin, cout, k, s, pad, op, groups, bias=not p["bn"], dilation=d)
        self.bn = nn.BatchNorm2d(cout) if p["bn"] else nn.Identity()
        self.act = ACTS[p["act"]]()
        self.out_channels = cout

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Reshuffle(nn.Module):
    """Sub-pixel upsampling (conv + pixel shuffle), padding ops, channel slices: decoder plumbing."""

    def __init__(self, c, mode):
        super().__init__()
        self.conv = nn.Conv2d(c, 4 * c, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.down = nn.Conv2d(c, c, 3, 2)  # valid: the padding below feeds it
        self.mode, self.even = mode, c % 2 == 0

    def forward(self, x):
        y = self.shuffle(self.conv(x))
        # Either padding keeps the size through the valid stride-2 conv: (2H, 2W) -> (H, W).
        y = F.pad(y, (1, 1, 0, 1), mode=self.mode) if self.mode != "constant" else F.pad(y, (1, 0, 1, 1), value=0.25)
        y = self.down(y)
        a, b = y.chunk(2, 1) if self.even else (y[:, :1], y[:, 1:])
        return torch.cat([b, F.relu(a)], 1)


class DecoderNet(nn.Module):
    """Encoder (strided convs), decoder (transposed convs, reshuffles), channel-softmax head."""

    def __init__(self, encoder, decoder):
        super().__init__()
        layers, c = [], 3
        for p in encoder:
            blk = ConvBlock(c, p["cout"], p["k"], p["s"], p["d"], p["dw"], p["same"], p["act"], p["bn"])
            layers.append(blk)
            c = blk.out_channels
        for kind, p in decoder:
            blk = UpBlock(c, p) if kind == "up" else Reshuffle(c, p)
            c = getattr(blk, "out_channels", c)
            layers.append(blk)
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 3, 1)

    def forward(self, x):
        y = self.head(self.body(x))
        return F.softmax(y, dim=1), y.mean((2, 3))


up_params = st.fixed_dictionaries({
    "cout": st.integers(2, 6), "k": st.sampled_from([1, 2, 3, 4]), "s": st.sampled_from([1, 2, 2, 3]),
    "d": st.sampled_from([1, 1, 2]), "pad": st.integers(0, 2), "op": st.integers(0, 2), "dw": st.booleans(),
    "act": st.integers(0, len(ACTS) - 1), "bn": st.booleans(),
})


@st.composite
def decoder_networks(draw):
    encoder = draw(st.lists(conv_params, min_size=1, max_size=3))
    decoder = draw(st.lists(st.one_of(st.tuples(st.just("up"), up_params),
                                      st.tuples(st.just("shuffle"), st.sampled_from(["constant", "reflect", "replicate"]))),
                            min_size=1, max_size=3))
    ups = 0
    for kind, p in decoder:  # at most two upsampling x2+ stages: maps stay small
        if kind == "up" and p["s"] > 1:
            ups += 1
            if ups > 2:
                p["s"] = 1
    torch.manual_seed(draw(st.integers(0, 2**16)))
    return _init(DecoderNet(encoder, decoder))
