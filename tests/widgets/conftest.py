"""Tests of wan_nb/widgets (widget state checked in Python, as a browser would be sent it)."""
