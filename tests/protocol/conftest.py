"""Tests of wan_nb/protocol: the event vocabulary and its schema."""
