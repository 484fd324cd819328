"""Tests of wan_nb/compose: sweeps and grids."""
