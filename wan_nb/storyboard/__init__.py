"""Storyboards: several scenes generated one after another and stitched into one video.

>>> from wan_nb import Generator, Storyboard, Scene
>>> gen = Generator(model="tiny")
>>> board = Storyboard(gen, ["a fox wakes up in the snow", Scene("the fox runs", seconds=2)],
...                    transition="crossfade", crossfade=0.25)
>>> result = board.run()            # blocks; in a notebook shows one row per scene
>>> result.final_video_path, result.scene_videos

``plan``: the scenes and their checked parameters; ``run``: rendering and its events;
``folder``: the run folder's layout. Built on the Generator's public surface only.
"""

from wan_nb.protocol.errors import StoryboardCancelled, StoryboardError
from .folder import scene_url, video_url
from .plan import Scene, Storyboard, split_story
from .run import STEPS, StoryboardResult, StoryboardRun

__all__ = ["Scene", "Storyboard", "StoryboardRun", "StoryboardResult", "StoryboardError",
           "StoryboardCancelled", "split_story", "video_url", "scene_url", "STEPS"]
