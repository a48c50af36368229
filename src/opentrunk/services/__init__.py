"""The service layer: every operation the API, the admin API and the CLI perform on the
store, with the domain rules applied once. Functions take a `Store` and plain values and
return plain dicts; they raise the errors in `opentrunk.services.errors`."""
