"""Tests of wan_nb/cluster on a real local Ray cluster."""
