"""``python -m export``: export and verify one checkpoint (the command is ``export.cli``)."""

from export.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
