"""check_vision_transformer: correct models pass, each known mistake fails and is named."""

import pytest
from learner_copies import as_learner
import torch
from torch import nn

from vit_course import VisionTransformer
from vit_course.block import TransformerBlock
from vit_course.checks.vit import check_vision_transformer


class ScratchViT(nn.Module):
    """A ViT written from scratch, as a learner would, with the course's names."""

    def __init__(self, config):
        super().__init__()
        D = config.hidden_size
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(config.num_channels, D, config.patch_size, stride=config.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.num_patches, D))
        self.blocks = nn.ModuleList(TransformerBlock(config) for _ in range(config.num_hidden_layers))
        self.norm = nn.LayerNorm(D, eps=config.layer_norm_eps)
        self.head = nn.Linear(D, config.num_labels)

    def forward(self, pixel_values):
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)  # (B, N, D)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def test_reference_and_scratch_models_pass():
    for cls in (as_learner(VisionTransformer), ScratchViT):
        result = check_vision_transformer(cls)
        assert result.passed, f"expected {cls.__name__} to pass, got: {result}"


def test_check_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_vision_transformer(ScratchViT)
    torch.testing.assert_close(torch.rand(3), expected, msg="the check changed the global RNG state")


def test_stub_is_not_done_and_none_fails():
    class Stub(nn.Module):
        def __init__(self, config):
            super().__init__()
            raise NotImplementedError

    result = check_vision_transformer(Stub)
    assert not result.passed and result.not_done, f"expected 'not done yet', got: {result}"
    result = check_vision_transformer(None)
    assert not result.passed and not result.not_done


# ---------------------------------------------------------------------------
# Wrong models: each overrides one step of ScratchViT


class NoCLS(ScratchViT):
    def forward(self, pixel_values):
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2) + self.pos_embed[:, 1:]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class PosBeforeCLS(ScratchViT):
    def forward(self, pixel_values):
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)
        x = x + self.pos_embed  # (B, N, D) + (1, 1+N, D): a shape error
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class PosWithoutCLSRow(ScratchViT):
    def __init__(self, config):
        super().__init__(config)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.num_patches, config.hidden_size))


class MeanPool(ScratchViT):
    def forward(self, pixel_values):
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 1:].mean(1))


class NoFinalNorm(ScratchViT):
    def forward(self, pixel_values):
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(x[:, 0])


class Token1(ScratchViT):
    def forward(self, pixel_values):
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 1])


class ReshapedGrid(ScratchViT):
    def forward(self, pixel_values):
        f = self.patch_embed.proj(pixel_values)
        x = f.reshape(f.shape[0], -1, f.shape[1])
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class CLSLast(ScratchViT):
    def forward(self, pixel_values):
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([x, self.cls_token.expand(x.shape[0], -1, -1)], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, -1])


class NoPositions(ScratchViT):
    def forward(self, pixel_values):
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class Squeezed(ScratchViT):
    def forward(self, pixel_values):
        return super().forward(pixel_values).squeeze()


class Features(ScratchViT):
    def forward(self, pixel_values):
        x = self.patch_embed.proj(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)[:, 0]


class DefaultEps(ScratchViT):
    def __init__(self, config):
        super().__init__(config)
        self.norm = nn.LayerNorm(config.hidden_size)


class Softmaxed(ScratchViT):
    def forward(self, pixel_values):
        return super().forward(pixel_values).softmax(-1)


class PythonListBlocks(ScratchViT):
    def __init__(self, config):
        super().__init__(config)
        blocks = list(self.blocks)
        del self.blocks
        self.blocks = blocks  # a plain list: not registered, so not in the state dict


@pytest.mark.parametrize(
    "cls, words",
    [
        (NoCLS, "CLS token is missing"),
        (PosBeforeCLS, "concatenate the CLS token first"),
        (PosWithoutCLSRow, "pos_embed has N rows"),
        (MeanPool, "averaged (mean pooling)"),
        (NoFinalNorm, "final LayerNorm is missing"),
        (Token1, "token 1"),
        (ReshapedGrid, "reshaped to (B, N, D) instead of transposed"),
        (CLSLast, "appended at the end"),
        (NoPositions, "position embeddings are not added"),
        (Squeezed, "batch dimension is squeezed"),
        (Features, "apply self.head"),
        (DefaultEps, "eps"),
        (Softmaxed, "probabilities"),
        (PythonListBlocks, "nn.ModuleList"),
    ],
)
def test_each_known_mistake_fails_naming_its_cause(cls, words):
    result = check_vision_transformer(cls)
    assert not result.passed, f"expected {cls.__name__} to fail, but the check passed"
    assert not result.not_done
    text = str(result)
    assert words in text, f"expected the cause of {cls.__name__} to mention {words!r}, got:\n{text}"
    assert "the check itself failed" not in text
