"""Scenario simulations: the service and the simulated outside world, run end to end on a faster clock."""
