"""Tests of wan_nb/cli: the wan-nb command as a user runs it."""
