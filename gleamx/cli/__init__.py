"""Command-line shells over the library: parse arguments, call one function, print."""
