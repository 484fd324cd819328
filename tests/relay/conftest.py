"""Tests of wan_nb/relay: the producer side of the process-to-server link."""
