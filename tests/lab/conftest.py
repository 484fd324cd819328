"""The JupyterLab extension and notebooks in a real JupyterLab and headless Chromium."""
