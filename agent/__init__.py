"""hostagent: a host metrics agent with scheduled collectors and pre-rendered exposition."""

__version__ = "0.1.0"
