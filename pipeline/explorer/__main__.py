"""`python -m pipeline.explorer [--model ...] [--data ...] [--params ...] [--port ...]`."""

from pipeline.explorer.serve import main

main()
