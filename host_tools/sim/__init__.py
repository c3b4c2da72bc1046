"""Simulations: fleets of emulated devices, soak runs, a role's week, schedule drift."""
