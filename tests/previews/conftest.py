"""Tests of wan_nb/previews: live preview projection, encoding and rate."""
