"""The ``none`` head: exactly the running mean of the inputs over the valid steps."""
from __future__ import annotations

import pytest
import torch

from heads import create_head, head_entry

B, T, D = 3, 10, 5


def _running_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Reference, one sample and one step at a time. x (B, T, D), mask (B, T) -> (B, T, D)."""
    out = torch.zeros_like(x)
    for b in range(x.shape[0]):
        seen = []
        for t in range(x.shape[1]):
            if mask[b, t]:
                seen.append(x[b, t])
                out[b, t] = torch.stack(seen).mean(dim=0)
    return out


def test_is_the_running_mean_and_has_no_parameters():
    head = create_head("none", D)
    assert head.out_features == D and not list(head.parameters())
    assert not head.time_aware and not head_entry("none").time_aware
    x = torch.randn(B, T, D, dtype=torch.float64)
    y, (mean, count) = head(x)
    torch.testing.assert_close(y, x.cumsum(1) / torch.arange(1, T + 1, dtype=x.dtype).view(1, T, 1))
    torch.testing.assert_close(mean, x.mean(1))
    assert (count == T).all()


def test_mask_skips_steps():
    head = create_head("none", D)
    x = torch.randn(B, T, D, dtype=torch.float64)
    mask = torch.rand(B, T, generator=torch.Generator().manual_seed(0)) > 0.4
    mask[2] = False  # an empty clip
    mask[0, -1] = False  # a clip whose last step is padding
    y, (mean, count) = head(x, mask=mask)
    torch.testing.assert_close(y, _running_mean(x, mask))
    for b in range(2):
        torch.testing.assert_close(mean[b], x[b][mask[b]].mean(0))
    assert (mean[2] == 0).all() and count[2] == 0
    torch.testing.assert_close(count.squeeze(1), mask.sum(1).to(count.dtype))


def test_ignores_dt():
    head = create_head("none", D)
    x = torch.randn(B, T, D)
    assert torch.equal(head(x, torch.rand(B, T) * 1e5)[0], head(x)[0])


@pytest.mark.parametrize("split", [1, 4, 9])
def test_streaming_and_step_agree(split):
    head = create_head("none", D)
    x = torch.randn(B, T, D)
    y, (mean, count) = head(x)
    y1, state = head(x[:, :split])
    y2, (mean2, count2) = head(x[:, split:], state=state)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    torch.testing.assert_close(mean2, mean)
    y_loop, _ = head.step_loop(x)
    torch.testing.assert_close(y_loop, y)


def test_long_stream_keeps_the_mean_accurate():
    """After ten million steps (a carried-in count of 1e7) one more input still moves the mean right."""
    head = create_head("none", D)
    state = (torch.full((1, D), 2.0), torch.full((1, 1), 1e7))
    x = torch.full((1, 1, D), 2.0 + 1e7)  # moves the mean by exactly 1
    y, (mean, count) = head(x, state=state)
    torch.testing.assert_close(mean, torch.full((1, D), 3.0), rtol=1e-6, atol=1e-6)
    _, (mean_step, _) = head.step(x[:, 0], torch.ones(1, 1), state)
    torch.testing.assert_close(mean_step, mean, rtol=1e-6, atol=1e-6)
