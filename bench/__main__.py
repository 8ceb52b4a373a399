"""``python -m bench``: the benchmark suite (``bench.cli``)."""

from bench.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
