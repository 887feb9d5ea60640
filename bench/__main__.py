"""`python -m bench`: bench.suite."""

from bench.suite import main

main()
