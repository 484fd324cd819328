"""Tests of wan_nb/core and the Generator facade: tasks, bus, engines, steering, parameters, faults."""
