"""After the decode, before the MP4: a draft decode with TAEHV, frame interpolation and upscaling.

:mod:`.options` checks the run's arguments before any model work (and says what a recipe keeps),
:mod:`.interpolation` and :mod:`.upscaling` change the frames, :mod:`.stage` runs them as part of
the ``post_processing`` stage with their own progress, and :mod:`.draft_decode` decodes the final
latents with the tiny TAEHV decoder instead of the Wan VAE (``decode="taehv"``).
"""
