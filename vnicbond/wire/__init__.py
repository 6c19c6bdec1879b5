"""Wire formats: parse/build pairs for the headers the daemon reads or writes."""
