"""Wan Animate segments a long pose video as WanAnimatePipeline does: clips of 77 frames, each
starting from the last frame of the one before, and progress counts every step of every clip
(segments x steps). Before, a pose video without num_frames ran as one clip of all its frames:
161 frames became one 41-latent-frame pass, a sequence length the model never trained on."""
from __future__ import annotations

import numpy as np
import pytest

from _inputs_helpers import gradient, moving_square
from wan_nb import Generator
from wan_nb.models import pipelines
from wan_nb.models.video_io import read_frames


def _pipeline_segments(frames: int, segment: int, conditioning: int = 1) -> int:
    """diffusers 0.42's own count (pipeline_wan_animate.py, __call__ step 2), restated to compare."""
    effective = segment - conditioning
    last = (frames - conditioning) % effective
    target = frames + (0 if last == 0 else effective - last)
    return target // effective


@pytest.mark.parametrize("frames", [5, 9, 77, 81, 153, 157, 161, 229, 233, 401])
def test_segment_count_is_the_pipelines(frames):
    assert pipelines.animate_segments(frames) == _pipeline_segments(
        frames, pipelines.animate_segment_frames(frames))
    assert pipelines.animate_segment_frames(frames) == min(frames, 77)


def test_total_steps_are_segments_times_steps():
    video = object()
    assert pipelines.total_steps({"steps": 20, "num_frames": 161, "pose_video": video}) == 60
    assert pipelines.total_steps({"steps": 20, "num_frames": 77, "pose_video": video}) == 20
    assert pipelines.total_steps({"steps": 20, "num_frames": 161}) == 20   # not Animate: one pass


def test_an_81_frame_pose_video_runs_in_two_77_frame_clips(tmp_path):
    """81 frames: the shortest video of two clips (the second from frame 77 on, padded), the same
    mechanism as the issue's 161 frames in three at half the CPU time (the tiny VAE dominates)."""
    frames = 81
    pose = moving_square(frames)
    face = moving_square(frames, size=16)
    with Generator("tiny-animate", runs_dir=tmp_path / "runs", previews=False) as gen:
        gen.run_on_worker(lambda pipe: None)   # load first, to watch the transformer's inputs
        seen: list[int] = []
        hook = gen.pipeline.transformer.register_forward_pre_hook(
            lambda module, args, kwargs: seen.append(kwargs["hidden_states"].shape[2]), with_kwargs=True)
        events = []
        off = gen.subscribe(events.append)
        try:
            result = gen.generate("a dancer", image=gradient(), pose_video=pose, face_video=face, steps=2, seed=0,
                                  progress=False)
        finally:
            off()
            hook.remove()
    assert read_frames(result.video_path).shape == (frames, 32, 32, 3)
    # Two clips x two steps, each pass over one 77-frame clip: 20 latent frames + the reference's one
    # (one 81-frame pass would be 21 + 1).
    assert seen == [(77 - 1) // 4 + 1 + 1] * 4
    steps = [e.data for e in events if e.type == "detailed_generation_progress" and e.data.get("total_steps")]
    denoising = [d for d in steps if d["stage"] == "generating" and d["current_step"]]
    assert [d["current_step"] for d in denoising if d["message"].startswith("Step")] == [1, 2, 3, 4]
    assert {d["total_steps"] for d in steps} == {4}
    progress = [e.data["progress"] for e in events if e.type == "detailed_generation_progress"]
    assert progress == sorted(progress) and progress[-1] == 100.0
    stage_messages = [e.data["stage_message"] for e in events if e.type == "generation_stage"]
    assert "Denoising: 2 clips x 2 steps" in stage_messages
