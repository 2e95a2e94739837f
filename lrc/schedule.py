"""The learning-rate schedule of a two-stage run: warm-up and decay in each stage, restarted at the boundary."""

from __future__ import annotations

import torch


def two_stage_schedule(optimizer, stage1_steps: int, total_steps: int, warmup_ratio: float,
                        ticks_per_step: int = 1):
    """Linear warm-up then linear decay, restarted at the stage boundary (the stages optimise different losses).

    Accelerate steps a prepared scheduler once per process for every optimizer step (it assumes schedules counted
    in one process's batches); ours counts optimizer steps, so it divides those ticks back out.
    """
    stage2_steps = total_steps - stage1_steps
    w1, w2 = int(warmup_ratio * stage1_steps), int(warmup_ratio * stage2_steps)

    def factor(tick: int) -> float:
        step = tick // ticks_per_step
        if step < stage1_steps:
            s, n, w = step, stage1_steps, w1
        else:
            s, n, w = step - stage1_steps, stage2_steps, w2
        if s < w:
            return (s + 1) / (w + 1)
        return max(0.0, (n - s) / max(1, n - w))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
