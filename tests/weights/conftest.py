"""Tests of wan_nb/weights: quantized weights and single checkpoint files."""
