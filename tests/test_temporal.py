"""keep_distinct: the first time step first, then what changed since the step before."""

import torch

from aurora.vision.temporal import keep_distinct


def test_the_changed_token_of_a_repeated_frame_is_kept_first():
    torch.manual_seed(0)
    first = torch.randn(6, 8)
    video = torch.stack([first, first.clone(), first.clone()])  # (t=3, n=6, D=8): nothing moves...
    video[2, 4] = torch.randn(8)  # ...but one place in the last step
    assert keep_distinct(video, 7).tolist() == list(range(6)) + [2 * 6 + 4]
    assert keep_distinct(video, 18).tolist() == list(range(18))
    assert len(keep_distinct(video, 0)) == 1  # at least one token
    few = keep_distinct(video, 2).tolist()  # fewer than a step: the first step's most distinct places
    distance = 1 - torch.nn.functional.cosine_similarity(first, first.mean(0, keepdim=True), dim=-1)
    assert few == sorted(distance.argsort(descending=True)[:2].tolist())
