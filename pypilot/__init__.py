"""pypilot: a container init system and process supervisor, the successor to ContainerPilot 3."""

__version__ = "0.1.0"
