"""Asyncio SIP transports (UDP, TCP, TLS), the endpoint driving the transaction layer,
and RFC 3263 server location. See docs/sip-stack.md, "Transports and dialogs"."""
