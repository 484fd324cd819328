"""What a model is and how it loads: presets, few-step variants, kinds, pipelines, loading, download, devices, LoRA files, user inputs, video I/O and the tiny built-in models."""
