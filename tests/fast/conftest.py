"""Tests of wan_nb/fast: the planner, cache modes, attention, compile and few-step presets."""
