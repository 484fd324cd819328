"""Tests of wan_nb/runs: history, recipes, a run's kept inputs."""
