"""How weights are stored: weight options (quant=, transformer=), quantization, single checkpoint files, GGUF."""
