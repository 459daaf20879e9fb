"""`python -m slife ...` (and `torchrun -m slife train ...`) run the CLI."""

from slife.cli import main

if __name__ == "__main__":
    main()
