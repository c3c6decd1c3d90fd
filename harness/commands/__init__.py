"""One module per subcommand of run_benchmark.py: parse flags, call the library, print."""
