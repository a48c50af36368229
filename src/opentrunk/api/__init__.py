"""The HTTP API: the Zentrunk-compatible customer API and the operator API (FastAPI).
Routes are thin: they parse, call `opentrunk.services`, and shape the response."""
