"""`python -m opentrunk.cli`."""

from opentrunk.cli.main import app

app(prog_name="opentrunk")
