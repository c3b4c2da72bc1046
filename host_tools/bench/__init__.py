"""The benchmarks behind build/bench.json, the wire comparison and their device scripts."""
