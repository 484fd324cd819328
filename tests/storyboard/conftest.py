"""Tests of wan_nb/storyboard, end to end and over the server's SSE stream."""
