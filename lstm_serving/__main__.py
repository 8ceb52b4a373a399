"""``python -m lstm_serving``: the ``lstm-serving`` command (``lstm_serving.cli``)."""

from lstm_serving.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
