"""The specification's tools: its test vectors, generated from the library."""
