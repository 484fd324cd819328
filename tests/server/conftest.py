"""Tests of wan_nb/server against real Jupyter servers and producer processes."""
