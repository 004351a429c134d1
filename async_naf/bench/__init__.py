"""Speed benchmarks behind `async-naf bench`."""
