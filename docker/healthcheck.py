"""Container health check: exit 0 when the service answers ready, 1 otherwise.

Asks ``GET /v2/health/ready`` on this container's own port (``LSTM_SERVING_PORT``, default 8000),
which says yes only once every model is loaded, warmed up and its batcher is running. Standard
library only (the image has no curl). Sends the API key when one is set, in case it also guards
the health endpoints (``LSTM_SERVING_API_KEY_PROTECTS_HEALTH``).
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

TIMEOUT_S = 2.0


def main() -> int:
    port = os.environ.get("LSTM_SERVING_PORT", "8000")
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v2/health/ready")
    api_key = os.environ.get("LSTM_SERVING_API_KEY")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            ready = response.status == 200
    except urllib.error.HTTPError as error:  # 503: starting, a model is down, or draining
        print(f"not ready: HTTP {error.code} {error.read(500).decode(errors='replace')}")
        return 1
    except OSError as error:  # refused, reset or timed out: not listening (yet)
        print(f"not ready: {error}")
        return 1
    print("ready" if ready else "not ready")
    return 0 if ready else 1


if __name__ == "__main__":
    sys.exit(main())
