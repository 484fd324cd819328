"""Tests of wan_nb/post: draft decode, frame interpolation, upscaling, and their run stage."""
