"""opentrunk: a self-hosted SIP trunking platform with a Zentrunk-compatible API."""

__version__ = "0.1.0"
