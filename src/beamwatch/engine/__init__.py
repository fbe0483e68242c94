"""The engine: alarm logic, noise control and the loop that drives them."""
