"""clawd-agent: the host agent that ships Clawdstrike security telemetry to the SOC."""

__version__ = "0.1.0"
