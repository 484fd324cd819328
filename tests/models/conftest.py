"""Tests of wan_nb/models: presets, loading, downloads, LoRA files, every pipeline, the real-model path."""
